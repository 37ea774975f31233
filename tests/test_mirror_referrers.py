"""`ecrkit mirror` copies what is attached to an image (a signature, an SBOM) and stops at a source's rate
limit. Both registries are Debian's docker-registry (distribution 2.8), which does not serve the OCI 1.1
referrers API: the tag schema is what they hold (`sha256-<hex>` referrers index, cosign's `.sig`). The
API at the source is served by a proxy in front of it (built from that index); the target, the stand-in's
ECR registry, is distribution too, so its listing is checked through its referrers index tag. Docker
Hub's rate-limit headers, its 429 and credentials from a docker config are a proxy's too."""

from __future__ import annotations

import base64
import http.server as http_server
import json
import re
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.standin import REGISTRY_HOST, StandIn
from tests.conftest import free_port
from tests.test_mirror import (
    IMAGE,
    config,
    descriptor,
    digest,
    forward,
    http,
    image,
    push,
    run_mirror,
    serving_source,
    target_digest,
)

pytestmark = pytest.mark.standin


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving_source(tmp_path_factory.mktemp("source-registry")) as host:
        yield host


OCI_IMAGE = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = b"{}"
SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM_TYPE = "application/spdx+json"


def push_blob(host: str, repository: str, blob: bytes) -> None:
    location = http("POST", f"http://{host}/v2/{repository}/blobs/uploads/").headers["Location"]
    http("PUT", f"{location}{'&' if '?' in location else '?'}digest={digest(blob)}", blob, "application/octet-stream")


def attach(host: str, repository: str, subject: bytes, *, kind: str, layer_type: str, payload: bytes) -> bytes:
    """An OCI 1.1 artifact (an image manifest with artifactType and subject) pushed by its digest."""
    push_blob(host, repository, EMPTY)
    push_blob(host, repository, payload)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_IMAGE, "artifactType": kind,
        "config": descriptor("application/vnd.oci.empty.v1+json", EMPTY),
        "layers": [descriptor(layer_type, payload)],
        "subject": descriptor(IMAGE, subject),
    }).encode()  # fmt: skip
    http("PUT", f"http://{host}/v2/{repository}/manifests/{digest(manifest)}", manifest, OCI_IMAGE)
    return manifest


def signed_image(host: str, repository: str, text: str, cosign_tag: bool) -> dict[str, Any]:
    """An image with a signature and an SBOM attached, listed by the referrers index under the tag schema's
    `sha256-<hex>` tag (what an OCI 1.1 client writes where the registry has no referrers API), and the
    signature under cosign's `sha256-<hex>.sig` as well when `cosign_tag`."""
    parts = image(text)
    push(host, repository, "1", parts)
    subject = parts["manifest"]
    payload = json.dumps({"critical": {"image": {"docker-manifest-digest": digest(subject)}}}).encode()
    signature = attach(host, repository, subject, kind=SIGNATURE_TYPE, payload=payload,
                       layer_type="application/vnd.dev.cosign.simplesigning.v1+json")  # fmt: skip
    sbom = attach(host, repository, subject, kind=SBOM_TYPE, layer_type=SBOM_TYPE,
                  payload=json.dumps({"spdxVersion": "SPDX-2.3"}).encode())  # fmt: skip
    entries = [{**descriptor(OCI_IMAGE, body), "artifactType": kind} for body, kind in
               ((signature, SIGNATURE_TYPE), (sbom, SBOM_TYPE))]  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    fallback = digest(subject).replace(":", "-")
    http("PUT", f"http://{host}/v2/{repository}/manifests/{fallback}", index, OCI_INDEX)
    if cosign_tag:
        http("PUT", f"http://{host}/v2/{repository}/manifests/{fallback}.sig", signature, OCI_IMAGE)
    return {"subject": digest(subject), "signature": digest(signature), "sbom": digest(sbom),
            "index": digest(index), "fallback": fallback}  # fmt: skip


def target_manifest(stand_in: StandIn, tmp_path: Path, repository: str, reference: str) -> dict[str, Any] | None:
    """The stand-in registry's manifest under a reference, read through the helper, with its digest."""
    code = (
        "import json; from ecrkit.mirror import helper_credentials; from ecrkit.registry import Registry; "
        f"r = Registry({REGISTRY_HOST!r}, credentials=helper_credentials({REGISTRY_HOST!r})); "
        f"m = r.manifest({repository!r}, {reference!r}); "
        "print(json.dumps(m and {'digest': m.digest, 'body': json.loads(m.body)}))"
    )
    env = stand_in.client_env(tmp_path) | {"REQUESTS_CA_BUNDLE": str(stand_in.ca),
                                           "AWS_ECR_CACHE_DIR": str(tmp_path / "ecr")}  # fmt: skip
    done = stand_in.run([sys.executable, "-c", code], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def copied_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("copied ")]


def test_a_signature_and_an_sbom_are_copied_with_their_digests_by_the_tag_schema(
    stand_in: StandIn, source: str, tmp_path: Path
) -> None:
    attached = signed_image(source, "signed/app", "signed app", cosign_tag=True)
    wanted = config({"source": f"{source}/signed/app", "tags": ["1"], "repository": "referred/app"})
    first = run_mirror(stand_in, tmp_path, wanted)
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(copied_lines(first.stdout)) == 3, first.stdout  # the tag, the referrers index, the .sig tag
    for name in ("signature", "sbom"):  # by digest, as a referrer is named
        held = target_manifest(stand_in, tmp_path, "referred/app", attached[name])
        assert held is not None
        assert held["digest"] == attached[name]
        assert held["body"]["subject"]["digest"] == attached["subject"]
    listing = target_manifest(stand_in, tmp_path, "referred/app", attached["fallback"])  # the target's listing
    assert listing is not None
    assert listing["digest"] == attached["index"]
    assert {entry["digest"] for entry in listing["body"]["manifests"]} == {attached["signature"], attached["sbom"]}
    assert target_digest(stand_in, tmp_path, "referred/app", attached["fallback"] + ".sig") == attached["signature"]

    second = run_mirror(stand_in, tmp_path, wanted)
    assert second.returncode == 0, second.stdout + second.stderr
    assert copied_lines(second.stdout) == []
    assert "0 copied, 1 unchanged, 0 failed" in second.stdout


def test_referrers_can_be_left_behind(stand_in: StandIn, source: str, tmp_path: Path) -> None:
    """The negative control: `referrers: false` copies the image alone."""
    attached = signed_image(source, "signed/bare", "bare app", cosign_tag=True)
    wanted = {**config({"source": f"{source}/signed/bare", "tags": ["1"], "repository": "referred/bare"}),
              "referrers": False}  # fmt: skip
    done = run_mirror(stand_in, tmp_path, wanted)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(copied_lines(done.stdout)) == 1
    assert target_digest(stand_in, tmp_path, "referred/bare", "1") == attached["subject"]
    assert target_manifest(stand_in, tmp_path, "referred/bare", attached["signature"]) is None
    assert target_digest(stand_in, tmp_path, "referred/bare", attached["fallback"]) is None


class ReferrersProxy(http_server.BaseHTTPRequestHandler):
    """The source with the OCI 1.1 referrers API (built from its `sha256-<hex>` index) and without the tag
    schema's tags in its tag list: what a source that serves the API looks like."""

    asked: list[str] = []  # noqa: RUF012 - the referrers requests

    def do_HEAD(self) -> None:
        self._answer("HEAD")

    def do_GET(self) -> None:
        self._answer("GET")

    def _answer(self, method: str) -> None:
        found = re.fullmatch(r"/v2/(.+)/referrers/(sha256:[0-9a-f]{64})", self.path)
        if found:
            self.asked.append(self.path)
            repository, subject = found.groups()
            tag = subject.replace(":", "-")
            status, _, body = forward("GET", f"/v2/{repository}/manifests/{tag}", {"Accept": OCI_INDEX})
            entries = json.loads(body)["manifests"] if status == 200 else []
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
            self._send(200, [("Content-Type", OCI_INDEX)], json.dumps(index).encode())
            return
        status, headers, body = forward(method, self.path, dict(self.headers))
        if "/tags/list" in self.path:
            listed = json.loads(body)
            listed["tags"] = [tag for tag in listed.get("tags") or [] if not tag.startswith("sha256-")]
            body = json.dumps(listed).encode()
        self._send(status, headers, body)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def proxy(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = request.param
    port = free_port()
    server = http_server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{port}"
    server.shutdown()


@pytest.mark.parametrize("proxy", [ReferrersProxy], indirect=True)
def test_referrers_the_source_api_lists_are_copied_and_indexed_where_the_target_has_no_api(
    stand_in: StandIn, source: str, proxy: str, tmp_path: Path
) -> None:
    attached = signed_image(source, "signed/api", "api app", cosign_tag=False)
    ReferrersProxy.asked = []
    wanted = config({"source": f"{proxy}/signed/api", "tags": ["1"], "repository": "referred/api"}, source_host=proxy)
    first = run_mirror(stand_in, tmp_path, wanted)
    assert first.returncode == 0, first.stdout + first.stderr
    assert ReferrersProxy.asked == [f"/v2/signed/api/referrers/{attached['subject']}"]
    assert len(copied_lines(first.stdout)) == 3  # the tag, the signature, the SBOM (by digest)
    assert f"referrer of {attached['subject']} ({SBOM_TYPE})" in first.stdout
    for name in ("signature", "sbom"):
        held = target_manifest(stand_in, tmp_path, "referred/api", attached[name])
        assert held is not None
        assert held["digest"] == attached[name]
    listing = target_manifest(stand_in, tmp_path, "referred/api", attached["fallback"])  # written by ecrkit
    assert listing is not None
    assert listing["body"]["mediaType"] == OCI_INDEX
    assert {(entry["digest"], entry["artifactType"]) for entry in listing["body"]["manifests"]} == {
        (attached["signature"], SIGNATURE_TYPE), (attached["sbom"], SBOM_TYPE)
    }  # fmt: skip

    second = run_mirror(stand_in, tmp_path, wanted)
    assert second.returncode == 0, second.stdout + second.stderr
    assert copied_lines(second.stdout) == []


# -- Docker Hub: credentials from the docker config, the rate limit --------------------------------

USER, SECRET = "mirror-bot", "hub-s3cret-0f-the-user"
WINDOW = 21600


class LimitedProxy(http_server.BaseHTTPRequestHandler):
    """Docker Hub's manners in front of the source: Basic credentials required, `ratelimit-*` headers on
    every answer, a manifest GET (not a HEAD) counted as a pull, and 429 with Retry-After once none remain."""

    remaining = 0
    others = 0  # pulls others behind the same address make before each of ours
    gets: list[str] = []  # noqa: RUF012 - the manifest GETs (pulls) it counted
    lock = threading.Lock()

    def do_HEAD(self) -> None:
        self._answer("HEAD")

    def do_GET(self) -> None:
        self._answer("GET")

    def _answer(self, method: str) -> None:
        wanted = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
        if self.headers.get("Authorization") != wanted:
            self._send(401, [("WWW-Authenticate", 'Basic realm="hub"')], b"")
            return
        with self.lock:
            pull = method == "GET" and "/manifests/" in self.path
            if pull:
                taken = min(self.others, self.remaining)
                LimitedProxy.remaining -= taken
                LimitedProxy.others -= taken
            if pull and self.remaining == 0:
                self._send(429, [("Retry-After", "3600"), *self._limits()], b"")
                return
            if pull:
                LimitedProxy.remaining -= 1
                self.gets.append(urllib.parse.unquote(self.path))
        status, headers, body = forward(method, self.path, {k: v for k, v in self.headers.items()
                                                            if k.lower() != "authorization"})  # fmt: skip
        self._send(status, [*headers, *self._limits()], body)

    def _limits(self) -> list[tuple[str, str]]:
        return [("ratelimit-limit", f"100;w={WINDOW}"), ("ratelimit-remaining", f"{self.remaining};w={WINDOW}")]

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def docker_config_with_helper(tmp_path: Path, registry: str) -> dict[str, str]:
    """A docker config whose credHelpers names a helper for the registry (a script answering as
    docker-credential-* helpers do), and the environment that finds both."""
    bin_dir, config_dir = tmp_path / "bin", tmp_path / "docker-config"
    bin_dir.mkdir()
    config_dir.mkdir()
    helper = bin_dir / "docker-credential-hub"
    helper.write_text(
        '#!/bin/sh\n[ "$1" = get ] || exit 1\nread -r server\n'
        f"[ \"$server\" = {registry} ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\n"
        f'echo \'{{"ServerURL": "{registry}", "Username": "{USER}", "Secret": "{SECRET}"}}\'\n'
    )
    helper.chmod(0o755)
    (config_dir / "config.json").write_text(json.dumps({"credHelpers": {registry: "hub"}}))
    return {"DOCKER_CONFIG": str(config_dir), "PATH": str(bin_dir)}


def run_with(stand_in: StandIn, tmp_path: Path, wanted: dict[str, Any], extra: dict[str, str], *options: str) -> Any:
    import yaml  # noqa: PLC0415

    (tmp_path / "mirror.yml").write_text(yaml.safe_dump(wanted))
    env = stand_in.client_env(tmp_path) | {"REQUESTS_CA_BUNDLE": str(stand_in.ca),
                                           "AWS_ECR_CACHE_DIR": str(tmp_path / "ecr")} | extra  # fmt: skip
    env["PATH"] = f"{extra['PATH']}:{stand_in.client_env()['PATH']}"
    debug = ["--debug"] if "--debug" in options else []
    rest = [option for option in options if option != "--debug"]
    argv = [sys.executable, "-m", "ecrkit", *debug, "mirror", "--config", str(tmp_path / "mirror.yml"), *rest]
    return stand_in.run(argv, env)


@pytest.mark.parametrize("proxy", [LimitedProxy], indirect=True)
def test_a_source_at_its_rate_limit_floor_stops_with_one_line_and_the_rest_finishes(
    stand_in: StandIn, source: str, proxy: str, tmp_path: Path
) -> None:
    LimitedProxy.remaining, LimitedProxy.others, LimitedProxy.gets = 12, 0, []
    wanted = {
        **config({"source": f"{proxy}/team/tool", "tags": ["1.0", "1.1", "2.0"], "repository": "limited/tool"},
                 {"source": f"{source}/team/multi", "tags": ["1"], "repository": "limited/multi"}),
        "plain_http": [proxy, source],
        "rate_limit_floor": 10,
    }  # fmt: skip
    extra = docker_config_with_helper(tmp_path, proxy)
    done = run_with(stand_in, tmp_path, wanted, extra, "--debug")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"ecrkit: debug: docker-credential-hub get <<< {proxy}" in done.stderr  # the helper was asked, and logged
    assert SECRET not in done.stdout + done.stderr
    assert base64.b64encode(f"{USER}:{SECRET}".encode()).decode() not in done.stdout + done.stderr
    assert len(LimitedProxy.gets) == 2  # 12 -> 10: two pulls, then none at the floor (HEADs are free)
    stops = [line for line in done.stdout.splitlines() if line.startswith("stopped")]
    assert len(stops) == 1, done.stdout
    assert f"{proxy}: rate limit: 10 of 100 pulls remain, the floor is 10" in stops[0]
    assert f"the window ({WINDOW} s) is whole again by 20" in stops[0]
    assert "(1 not copied)" in stops[0]
    assert f"rate limit: {proxy}: 10 of 100 remaining" in done.stdout
    assert "3 copied, 1 stopped, 0 failed" in done.stdout  # 1.0, 1.1 and the other source's index
    assert target_digest(stand_in, tmp_path, "limited/multi", "1") is not None
    held = [target_digest(stand_in, tmp_path, "limited/tool", tag) for tag in ("1.0", "1.1", "2.0")]
    assert held.count(None) == 1  # which one depends on the order the jobs ran in

    again = run_with(stand_in, tmp_path, wanted, extra, "--json")  # 10 remain: the floor; unchanged tags cost HEADs
    summary = json.loads(again.stdout)
    assert again.returncode == 1
    assert summary["rate_limits"][proxy] | {"resets_by": ""} == {
        "limit": 100, "remaining": 10, "window_seconds": WINDOW, "resets_by": "", "floor": 10, "stopped": True
    }  # fmt: skip
    assert summary["counts"]["unchanged"] == 3
    assert summary["counts"]["stopped"] == 1
    assert len(summary["stops"]) == 1
    assert len(LimitedProxy.gets) == 2


@pytest.mark.parametrize("proxy", [LimitedProxy], indirect=True)
def test_a_429_with_a_long_retry_after_stops_the_source_without_waiting(
    stand_in: StandIn, source: str, proxy: str, tmp_path: Path
) -> None:
    """No floor; one pull remains at the HEAD, but another user takes it before the GET: Docker Hub's 429
    (Retry-After: an hour) is reported, not slept through."""
    LimitedProxy.remaining, LimitedProxy.others, LimitedProxy.gets = 1, 1, []
    wanted = {**config({"source": f"{proxy}/team/tool", "tags": ["2.0"], "repository": "limited/none"},
                       source_host=proxy), "rate_limit_floor": 0}  # fmt: skip
    done = run_with(stand_in, tmp_path, wanted, docker_config_with_helper(tmp_path, proxy), "--json")
    summary = json.loads(done.stdout)
    assert done.returncode == 1
    assert summary["counts"]["stopped"] == 1
    (line,) = summary["stops"]
    assert "HTTP 429, retry after 3600 s" in line
    assert summary["rate_limits"][proxy]["remaining"] == 0
