"""Proof of pull for the OCI clients beside docker: Debian's skopeo and buildah, with the config.json
ecrkit renders and the real helper, against the local stand-in for ECR.

skopeo copies an image and inspects it, and copies an OCI artifact (a manifest with an
`artifactType` and a layer that is no filesystem) byte for byte; buildah pulls. The negative
controls: without the helper entry both are refused, and a config.json they cannot parse is
refused by ecrkit before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from testbed.standin import REGISTRY_HOST, StandIn
from tests.conftest import ROOT, run_ecrkit

pytestmark = pytest.mark.standin

ARTIFACT_TYPE = "application/vnd.ecrkit.test.note.v1"
NOTE_TYPE = "application/vnd.ecrkit.test.note.layer.v1+txt"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


def home_with(tmp_path: Path, config: str) -> Path:
    """A user whose ~/.docker/config.json is `config` and who has no containers/auth.json."""
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(config)
    return home


def client_env(stand_in: StandIn, home: Path) -> dict[str, str]:
    return stand_in.client_env(home) | {
        "XDG_RUNTIME_DIR": str(home),  # no containers/auth.json there: the clients read ~/.docker/config.json
        "CONTAINERS_CONF": str(ROOT / "molecule" / "containers.conf"),
        "AWS_ECR_CACHE_DIR": str(home / "ecr-cache"),
    }


def skopeo(stand_in: StandIn, home: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return stand_in.run(["skopeo", *arguments], client_env(stand_in, home))


def blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def artifact_layout(layout: Path, tag: str) -> tuple[bytes, bytes]:
    """An OCI image layout holding one artifact: the empty config, one text layer, an artifactType."""
    note = f"an ecrkit note, pid {os.getpid()}\n".encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_CONFIG, **blob(layout, b"{}")},
        "layers": [
            {
                "mediaType": NOTE_TYPE,
                **blob(layout, note),
                "annotations": {"org.opencontainers.image.title": "note.txt"},
            }
        ],
    }
    body = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": manifest["mediaType"],
                **blob(layout, body),
                "artifactType": ARTIFACT_TYPE,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return body, note


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    done = run_ecrkit("render", "docker-config", "--registry", REGISTRY_HOST)
    assert done.returncode == 0, done.stderr
    return home_with(tmp_path, done.stdout)


def test_skopeo_copies_and_inspects_an_image_with_the_config_ecrkit_renders(
    stand_in: StandIn, image: str, rendered: Path, tmp_path: Path
) -> None:
    inspected = skopeo(stand_in, rendered, "inspect", f"docker://{image}")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Name"] == image.rsplit(":", 1)[0]
    copied = skopeo(stand_in, rendered, "copy", f"docker://{image}", f"oci:{tmp_path / 'copy'}:1")
    assert copied.returncode == 0, copied.stderr
    assert json.loads((tmp_path / "copy" / "index.json").read_text())["manifests"]
    # Negative control: the same user without the helper entry is refused.
    bare = home_with(tmp_path / "bare", "{}")
    assert skopeo(stand_in, bare, "inspect", f"docker://{image}").returncode != 0


def test_skopeo_copies_an_oci_artifact_through_the_helper_byte_for_byte(
    stand_in: StandIn, rendered: Path, tmp_path: Path
) -> None:
    tag = f"note-{os.getpid()}"
    source, back = tmp_path / "artifact", tmp_path / "back"
    manifest, note = artifact_layout(source, tag)
    reference = f"docker://{REGISTRY_HOST}/team/artifacts:{tag}"
    pushed = skopeo(stand_in, rendered, "copy", "--preserve-digests", f"oci:{source}:{tag}", reference)
    assert pushed.returncode == 0, pushed.stderr
    raw = skopeo(stand_in, rendered, "inspect", "--raw", reference)
    assert raw.returncode == 0, raw.stderr
    assert json.loads(raw.stdout)["artifactType"] == ARTIFACT_TYPE
    pulled = skopeo(stand_in, rendered, "copy", "--preserve-digests", reference, f"oci:{back}:{tag}")
    assert pulled.returncode == 0, pulled.stderr
    digest = json.loads((back / "index.json").read_text())["manifests"][0]["digest"]
    assert digest == f"sha256:{hashlib.sha256(manifest).hexdigest()}"  # the same manifest, not a conversion
    layer = json.loads((back / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())["layers"][0]
    assert layer["mediaType"] == NOTE_TYPE
    assert (back / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes() == note


def buildah_pull(stand_in: StandIn, home: Path, image: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="ecrkit-bh-") as runroot:  # short: buildah wants it under 50 characters
        storage = ["--root", str(home / "storage"), "--runroot", runroot, "--storage-driver", "vfs"]
        return stand_in.run(["buildah", *storage, "pull", image], client_env(stand_in, home))


def test_buildah_pulls_with_the_config_ecrkit_renders(
    stand_in: StandIn, image: str, rendered: Path, tmp_path: Path
) -> None:
    done = buildah_pull(stand_in, rendered, image)
    assert done.returncode == 0, done.stderr
    assert buildah_pull(stand_in, home_with(tmp_path / "bare", "{}"), image).returncode != 0


def test_a_config_the_clients_cannot_parse_is_refused_by_ecrkit_before_it_is_written(
    stand_in: StandIn, image: str, tmp_path: Path
) -> None:
    broken = '{"credHelpers": {"' + REGISTRY_HOST + '": "ecr-login"},}'  # a trailing comma
    home = home_with(tmp_path, broken)
    config = home / ".docker" / "config.json"
    # What the clients make of it: skopeo and buildah both fail on the file itself.
    for done in (skopeo(stand_in, home, "inspect", f"docker://{image}"), buildah_pull(stand_in, home, image)):
        assert done.returncode != 0
    # ecrkit refuses to merge into it, naming the file and the parse error, and writes nothing.
    refused = run_ecrkit("render", "docker-config", "--registry", REGISTRY_HOST, "--merge", str(config))
    assert refused.returncode != 0
    assert str(config) in refused.stderr and "not valid JSON" in refused.stderr
    assert refused.stdout == "" and config.read_text() == broken
