"""`ecrkit mirror` from a second real registry (Debian's docker-registry on loopback, plain HTTP)
into the stand-in's ECR registry, authenticated by the real helper; a proxy in front of the
source injects 503 and 429 answers to prove the retries."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server as http_server
import io
import json
import subprocess
import sys
import tarfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecrkit import cli, mirror
from ecrkit.errors import FileFormatError, InputError
from testbed.standin import REGISTRY_HOST, StandIn
from tests.conftest import free_port, readme_block, wait_for_url

pytestmark = pytest.mark.standin

SHARED_BASE, SHARED_TAGS = "a base layer " * 1000, ("1", "2", "3", "4")
SOURCE = "127.0.0.4:5000"  # a loopback address of its own: nothing else listens there
LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving_source(tmp_path_factory.mktemp("source-registry")) as host:
        yield host


@contextlib.contextmanager
def serving_source(state: Path, address: str = SOURCE, log: Path | None = None) -> Iterator[str]:
    """Debian's docker-registry over plain HTTP, holding the images to mirror; its output (the access log
    among it) kept in `log` if given."""
    config = {"version": 0.1, "log": {"level": "warn"}, "http": {"addr": address},
              "storage": {"filesystem": {"rootdirectory": str(state / "data")}}}  # fmt: skip
    (state / "config.yml").write_text(json.dumps(config))
    output = log.open("ab") if log is not None else subprocess.DEVNULL
    server = subprocess.Popen(["docker-registry", "serve", str(state / "config.yml")], stdout=output, stderr=output)
    try:
        wait_for_url(f"http://{address}/v2/", "the source registry")
        push(address, "team/tool", "1.0", image("tool 1.0"))
        push(address, "team/tool", "1.1", image("tool 1.1"))
        push(address, "team/tool", "2.0", image("tool 2.0"))
        push_index(address, "team/multi", "1", {"amd64": image("multi amd64"), "arm64": image("multi arm64", "arm64")})
        for tag in SHARED_TAGS:  # four tags on one base layer, and a repository of its own on it too
            push(address, "shared/app", tag, image(f"app {tag}", base=SHARED_BASE))
        push(address, "shared/other", "1", image("other 1", base=SHARED_BASE))
        yield address
    finally:
        server.terminate()
        server.wait(timeout=10)
        if log is not None:
            output.close()  # type: ignore[union-attr]


# -- building and pushing images over the registry API -----------------------------------------


def layer(text: str) -> tuple[bytes, bytes]:
    """A gzipped tar holding one file with this text, and the tar itself (for the config's diff_ids)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(text.encode())
        archive.addfile(info, io.BytesIO(text.encode()))
    return gzip.compress(raw.getvalue(), mtime=0), raw.getvalue()


def image(text: str, architecture: str = "amd64", base: str = "", created: str = "") -> dict[str, Any]:
    """A one-file image (two layers with a `base` layer below it): its layers, config and manifest."""
    layers = [layer(part) for part in (base, text) if part]
    diff_ids = [digest(raw) for _, raw in layers]
    config = json.dumps({"architecture": architecture, "os": "linux", **({"created": created} if created else {}),
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()  # fmt: skip
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": IMAGE,
        "config": descriptor("application/vnd.docker.container.image.v1+json", config),
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", gz) for gz, _ in layers],
    }).encode()  # fmt: skip
    return {"layers": [gz for gz, _ in layers], "config": config, "manifest": manifest}


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "size": len(data), "digest": digest(data)}


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def http(method: str, url: str, data: bytes | None = None, content_type: str = "") -> Any:
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": content_type} if content_type else {}
    )
    return urllib.request.urlopen(request, timeout=10)


def push(host: str, repository: str, tag: str, parts: dict[str, Any]) -> str:
    for blob in (*parts["layers"], parts["config"]):
        location = http("POST", f"http://{host}/v2/{repository}/blobs/uploads/").headers["Location"]
        http(
            "PUT", f"{location}{'&' if '?' in location else '?'}digest={digest(blob)}", blob, "application/octet-stream"
        )
    http("PUT", f"http://{host}/v2/{repository}/manifests/{tag}", parts["manifest"], IMAGE)
    return digest(parts["manifest"])


def push_index(host: str, repository: str, tag: str, platforms: dict[str, dict[str, Any]]) -> str:
    entries = []
    for architecture, parts in platforms.items():
        push(host, repository, digest(parts["manifest"]), parts)
        entries.append(
            {**descriptor(IMAGE, parts["manifest"]), "platform": {"architecture": architecture, "os": "linux"}}
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": LIST, "manifests": entries}).encode()
    http("PUT", f"http://{host}/v2/{repository}/manifests/{tag}", index, LIST)
    return digest(index)


def source_digest(repository: str, tag: str) -> str:
    request = urllib.request.Request(f"http://{SOURCE}/v2/{repository}/manifests/{tag}", method="HEAD",
                                     headers={"Accept": f"{LIST}, {IMAGE}"})  # fmt: skip
    return str(urllib.request.urlopen(request, timeout=10).headers["Docker-Content-Digest"])


# -- running the mirror as a user does, where the ECR names resolve ---------------------------


def run_mirror(
    stand_in: StandIn, tmp_path: Path, config: dict[str, Any], *options: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "mirror.yml").write_text(yaml.safe_dump(config))
    env = stand_in.client_env(tmp_path) | {
        "REQUESTS_CA_BUNDLE": str(stand_in.ca),
        "AWS_ECR_CACHE_DIR": str(tmp_path / "ecr"),
    }
    return stand_in.run(
        [sys.executable, "-m", "ecrkit", "mirror", "--config", str(tmp_path / "mirror.yml"), *options], env
    )


def target_digest(stand_in: StandIn, tmp_path: Path, repository: str, tag: str) -> str | None:
    """What the stand-in's ECR registry holds under the tag, read through the helper as well."""
    code = (
        "import sys; from ecrkit.mirror import helper_credentials; from ecrkit.registry import Registry; "
        f"r = Registry({REGISTRY_HOST!r}, credentials=helper_credentials({REGISTRY_HOST!r})); "
        f"print(r.manifest_digest({repository!r}, {tag!r}))"
    )
    env = stand_in.client_env(tmp_path) | {
        "REQUESTS_CA_BUNDLE": str(stand_in.ca),
        "AWS_ECR_CACHE_DIR": str(tmp_path / "ecr"),
    }
    done = stand_in.run([sys.executable, "-c", code], env)
    assert done.returncode == 0, done.stderr
    answer = done.stdout.strip()
    return None if answer == "None" else answer


def repositories(stand_in: StandIn, tmp_path: Path) -> list[str]:
    code = (
        "import boto3; ecr = boto3.client('ecr', region_name='us-east-1'); "
        "print(' '.join(r['repositoryName'] for r in ecr.describe_repositories()['repositories']))"
    )
    done = stand_in.run([sys.executable, "-c", code], stand_in.client_env(tmp_path))
    assert done.returncode == 0, done.stderr
    return sorted(done.stdout.split())


def config(*images: dict[str, Any], source_host: str = SOURCE) -> dict[str, Any]:
    return {"target": REGISTRY_HOST, "prefix": "mirror", "plain_http": [source_host], "images": list(images)}


def test_copies_create_repositories_keep_digests_and_a_second_run_skips(
    stand_in: StandIn, source: str, tmp_path: Path
) -> None:
    wanted = config(
        {"source": f"{source}/team/tool", "tags": ["1.*"]}, {"source": f"{source}/team/multi", "tags": ["1"]}
    )
    first = run_mirror(stand_in, tmp_path, wanted, "--jobs", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "3 copied, 0 failed" in first.stdout  # 1.0 and 1.1 (the pattern), and the index; not 2.0
    assert {"mirror/team/tool", "mirror/team/multi"} <= set(repositories(stand_in, tmp_path))
    for repository, tag in (("team/tool", "1.0"), ("team/tool", "1.1"), ("team/multi", "1")):
        assert target_digest(stand_in, tmp_path, f"mirror/{repository}", tag) == source_digest(repository, tag)
    assert target_digest(stand_in, tmp_path, "mirror/team/tool", "2.0") is None
    assert "(2 platforms)" in first.stdout

    # The real docker CLI pulls the copy through the helper.
    home = tmp_path / "puller"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"credHelpers": {REGISTRY_HOST: "ecr-login"}}))
    pulled = stand_in.run(["docker", "pull", f"{REGISTRY_HOST}/mirror/team/multi:1"], stand_in.client_env(home))
    assert pulled.returncode == 0, pulled.stderr

    second = run_mirror(stand_in, tmp_path, wanted)
    assert second.returncode == 0, second.stdout
    assert "0 copied, 3 unchanged, 0 failed" in second.stdout
    assert "created" not in second.stdout


def test_a_dry_run_reports_and_writes_nothing(stand_in: StandIn, source: str, tmp_path: Path) -> None:
    wanted = config({"source": f"{source}/team/tool", "tags": ["2.0"], "repository": "dry/tool"})
    done = run_mirror(stand_in, tmp_path, wanted, "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"would create {REGISTRY_HOST}/dry/tool" in done.stdout
    assert "1 would copy" in done.stdout
    assert "dry/tool" not in repositories(stand_in, tmp_path)
    assert target_digest(stand_in, tmp_path, "dry/tool", "2.0") is None


def forward(method: str, path: str, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    """The source registry's answer (an error status included) to a request: status, headers to pass on, body."""
    request = urllib.request.Request(f"http://{SOURCE}{path}", method=method, headers=headers)
    try:
        answer = urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as error:  # a 404 is an answer to pass on too
        answer = error
    with answer:
        body = answer.read()
        passed = [(key, value) for key, value in answer.headers.items()
                  if key.lower() not in ("content-length", "connection", "transfer-encoding")]  # fmt: skip
        return answer.status, passed, body


class FlakyProxy(http_server.BaseHTTPRequestHandler):
    """Forwards to the source registry, but answers the first requests for chosen paths with
    an error: {path fragment: [status, ...]}."""

    failures: dict[str, list[int]] = {}  # noqa: RUF012 - set per test, read by the handler threads
    blob_bytes: list[tuple[str, int]] = []  # noqa: RUF012 - (digest, bytes) of each blob read through it
    lock = threading.Lock()

    def do_GET(self) -> None:
        self._answer("GET")

    def do_HEAD(self) -> None:
        self._answer("HEAD")

    def _answer(self, method: str) -> None:
        for fragment, statuses in self.failures.items():
            if fragment in self.path and statuses:
                status = statuses.pop(0)
                self.send_response(status)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        status, headers, body = forward(method, self.path, dict(self.headers))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if method == "GET" and "/blobs/" in self.path:
            with self.lock:
                self.blob_bytes.append((self.path.rsplit("/", 1)[1], len(body)))

    def log_message(self, *args: Any) -> None:
        pass


def test_failing_requests_are_retried(stand_in: StandIn, source: str, tmp_path: Path) -> None:
    port = free_port()
    server = http_server.ThreadingHTTPServer(("127.0.0.1", port), FlakyProxy)
    blob = json.loads(image("tool 2.0")["manifest"])["layers"][0]["digest"]
    FlakyProxy.failures = {"/manifests/2.0": [503], f"/blobs/{blob}": [429, 502]}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wanted = config({"source": f"127.0.0.1:{port}/team/tool", "tags": ["2.0"], "repository": "flaky/tool"},
                        source_host=f"127.0.0.1:{port}")  # fmt: skip
        done = run_mirror(stand_in, tmp_path, wanted)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stdout + done.stderr
    assert FlakyProxy.failures == {"/manifests/2.0": [], f"/blobs/{blob}": []}  # every injected failure was met
    assert target_digest(stand_in, tmp_path, "flaky/tool", "2.0") == source_digest("team/tool", "2.0")


def test_a_missing_tag_fails_alone_and_exits_1(stand_in: StandIn, source: str, tmp_path: Path) -> None:
    wanted = config(
        {"source": f"{source}/team/tool", "tags": ["9.9", "1.0"]}, {"source": f"{source}/team/tool", "tags": ["7.*"]}
    )
    done = run_mirror(stand_in, tmp_path, wanted)
    assert done.returncode == 1
    assert "no such tag at the source" in done.stdout
    assert "no tag matches this pattern" in done.stdout
    assert target_digest(stand_in, tmp_path, "mirror/team/tool", "1.0") == source_digest("team/tool", "1.0")


def test_each_blob_is_read_once_mounted_across_repositories_with_one_token(
    stand_in: StandIn, source: str, tmp_path: Path
) -> None:
    """Eight jobs at once for four tags on one base layer, and another repository on the same base:
    every blob leaves the source once, the base is mounted into the second repository, and the run
    asks ECR for one token; --json says so."""
    port = free_port()
    server = http_server.ThreadingHTTPServer(("127.0.0.1", port), FlakyProxy)
    FlakyProxy.failures, FlakyProxy.blob_bytes = {}, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxied = f"127.0.0.1:{port}"
    tokens_before = stand_in.token_requests()
    try:
        wanted = config({"source": f"{proxied}/shared/app", "tags": ["*"], "repository": "once/app"},
                        {"source": f"{proxied}/shared/other", "tags": ["1"], "repository": "once/other"},
                        source_host=proxied)  # fmt: skip
        done = run_mirror(stand_in, tmp_path, wanted, "--jobs", "8", "--json")
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["counts"]["copied"] == 5
    assert summary["exit_code"] == 0
    blobs: dict[str, int] = {}
    for tag in SHARED_TAGS:
        parts = image(f"app {tag}", base=SHARED_BASE)
        blobs |= {digest(blob): len(blob) for blob in (*parts["layers"], parts["config"])}
    other = image("other 1", base=SHARED_BASE)
    blobs |= {digest(blob): len(blob) for blob in (*other["layers"], other["config"])}
    read = [name for name, _ in FlakyProxy.blob_bytes]
    assert sorted(read) == sorted(blobs)  # each blob once, the shared base included
    assert sum(size for _, size in FlakyProxy.blob_bytes) == sum(blobs.values())
    assert summary["blobs"]["source_bytes_read"] == sum(blobs.values())
    assert summary["blobs"]["mounted"] == 1  # the base, into the repository that did not upload it
    assert summary["blobs"]["copied"] == len(blobs)
    assert stand_in.token_requests() - tokens_before == 1
    for repository, tag in [*(("once/app", tag) for tag in SHARED_TAGS), ("once/other", "1")]:
        expected = source_digest("shared/app" if repository == "once/app" else "shared/other", tag)
        assert target_digest(stand_in, tmp_path, repository, tag) == expected


def target_manifest(stand_in: StandIn, tmp_path: Path, repository: str, reference: str) -> bytes | None:
    """The manifest's bytes as the stand-in's ECR registry serves them, read through the helper."""
    code = (
        "import sys; from ecrkit.mirror import helper_credentials; from ecrkit.registry import Registry; "
        f"r = Registry({REGISTRY_HOST!r}, credentials=helper_credentials({REGISTRY_HOST!r})); "
        f"m = r.manifest({repository!r}, {reference!r}); print(m.body.hex() if m else 'None')"
    )
    env = stand_in.client_env(tmp_path) | {"REQUESTS_CA_BUNDLE": str(stand_in.ca),
                                           "AWS_ECR_CACHE_DIR": str(tmp_path / "ecr")}  # fmt: skip
    done = stand_in.run([sys.executable, "-c", code], env)
    assert done.returncode == 0, done.stderr
    answer = done.stdout.strip()
    return None if answer == "None" else bytes.fromhex(answer)


def test_platforms_filter_an_index_keep_its_manifests_and_a_second_run_copies_nothing(
    stand_in: StandIn, source: str, tmp_path: Path
) -> None:
    parts = {
        architecture: image(f"platform {architecture}", architecture) for architecture in ("amd64", "arm64", "s390x")
    }
    source_index = push_index(source, "team/platforms", "1", parts)
    wanted = config({"source": f"{source}/team/platforms", "tags": ["1"], "platforms": ["linux/amd64", "linux/arm64"]})
    said = "(2 of 3 platforms: a filtered index, a new digest; the source's is " + source_index + ")"
    dry = run_mirror(stand_in, tmp_path, wanted, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert said in dry.stdout
    assert "1 would copy, 0 failed; 1 with platforms filtered (a new digest, not the source's)" in dry.stdout

    first = run_mirror(stand_in, tmp_path, wanted)
    assert first.returncode == 0, first.stdout + first.stderr
    assert said in first.stdout
    assert "1 copied, 0 failed; 1 with platforms filtered" in first.stdout
    copied = target_digest(stand_in, tmp_path, "mirror/team/platforms", "1")
    assert copied is not None
    assert copied != source_index
    index = target_manifest(stand_in, tmp_path, "mirror/team/platforms", "1")
    assert index is not None
    assert digest(index) == copied
    listed = json.loads(index)["manifests"]
    assert [entry["platform"]["architecture"] for entry in listed] == ["amd64", "arm64"]
    for architecture in ("amd64", "arm64"):  # the source's manifests, byte for byte, under their own digests
        manifest = parts[architecture]["manifest"]
        assert target_manifest(stand_in, tmp_path, "mirror/team/platforms", digest(manifest)) == manifest
    assert target_digest(stand_in, tmp_path, "mirror/team/platforms", digest(parts["s390x"]["manifest"])) is None

    second = run_mirror(stand_in, tmp_path, wanted, "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    summary = json.loads(second.stdout)
    assert summary["counts"]["copied"] == 0
    assert summary["counts"]["unchanged"] == 1
    assert summary["platforms_filtered"] == 1
    # Another filter is another index: the target's differs, so it is copied again (a negative control).
    everything = config({"source": f"{source}/team/platforms", "tags": ["1"]})
    third = run_mirror(stand_in, tmp_path, everything)
    assert "1 copied, 0 failed" in third.stdout
    assert target_digest(stand_in, tmp_path, "mirror/team/platforms", "1") == source_index


class CountingProxy(FlakyProxy):
    """FlakyProxy that also notes every path asked for."""

    paths: list[str] = []  # noqa: RUF012 - set per test, read by the handler threads

    def _answer(self, method: str) -> None:
        with self.lock:
            self.paths.append(f"{method} {self.path}")
        super()._answer(method)


def test_tag_rules_select_from_a_real_registry_and_the_dry_run_says_why(
    stand_in: StandIn, source: str, tmp_path: Path
) -> None:
    """`latest_by: created` reads the creation time of the candidates only (not of the tags a rule before
    it dropped); semver and exclude narrow first; the dry run names each rule's choice."""
    times = {"2.1.0": "2026-03-01T00:00:00Z", "2.2.0": "2026-01-01T00:00:00Z", "2.3.0": "2025-12-01T00:00:00Z",
             "2.4.0-rc.1": "2026-06-01T00:00:00Z", "1.9.0": "2026-07-01T00:00:00Z"}  # fmt: skip
    for tag, created in times.items():
        push(source, "team/dated", tag, image(f"dated {tag}", created=created))
    port = free_port()
    server = http_server.ThreadingHTTPServer(("127.0.0.1", port), CountingProxy)
    FlakyProxy.failures, CountingProxy.paths = {}, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxied = f"127.0.0.1:{port}"
    try:
        wanted = config({"source": f"{proxied}/team/dated", "semver": ">=2", "exclude": ["-rc"], "latest": 2,
                         "latest_by": "created"}, source_host=proxied)  # fmt: skip
        dry = run_mirror(stand_in, tmp_path, wanted, "--dry-run")
    finally:
        server.shutdown()
    assert dry.returncode == 0, dry.stdout + dry.stderr
    name = f"{proxied}/team/dated"
    assert f"rule         {name}  exclude '-rc': dropped 2.4.0-rc.1 (matches)" in dry.stdout
    assert (
        f"rule         {name}  semver '>=2': selected 2.1.0, 2.2.0, 2.3.0 (in the range); dropped 1.9.0 " in dry.stdout
    )
    assert (f"rule         {name}  latest 2 by created: selected 2.1.0 (created 2026-03-01T00:00:00Z, newest 1 of 3), "
            "2.2.0 (created 2026-01-01T00:00:00Z, newest 2 of 3); dropped 2.3.0 (created 2025-12-01T00:00:00Z: "
            "older than the 2 kept)") in dry.stdout  # fmt: skip
    assert f"rule         {name}  to copy: 2.1.0, 2.2.0" in dry.stdout
    assert "2 would copy" in dry.stdout
    asked = [path.split()[1].rsplit("/", 1)[1] for path in CountingProxy.paths if "/manifests/" in path]
    assert sorted(set(asked)) == ["2.1.0", "2.2.0", "2.3.0"]  # 1.9.0 and the rc: never asked for
    configs = [path for path in CountingProxy.paths if "/blobs/" in path]
    assert len(configs) == 3  # one config blob per candidate


def test_the_dry_run_names_the_images_a_pull_through_cache_serves(
    stand_in: StandIn, source: str, tmp_path: Path
) -> None:
    wanted = config(
        {"source": f"{source}/team/tool", "tags": ["1.0"]}, {"source": f"{source}/shared/other", "tags": ["1"]}
    )
    before = run_mirror(stand_in, tmp_path, wanted, "--dry-run")
    assert before.returncode == 0, before.stdout + before.stderr
    assert "cached" not in before.stdout  # no rule yet: a negative control

    def ecr(call: str) -> None:
        code = f"import boto3; ecr = boto3.client('ecr', region_name='us-east-1'); ecr.{call}"
        done = stand_in.run([sys.executable, "-c", code], stand_in.client_env(tmp_path))
        assert done.returncode == 0, done.stderr

    ecr(f"create_pull_through_cache_rule(ecrRepositoryPrefix='local', upstreamRegistryUrl={source!r}, "
        "upstreamRepositoryPrefix='team')")  # fmt: skip
    try:
        after = run_mirror(stand_in, tmp_path, wanted, "--dry-run")
    finally:
        ecr("delete_pull_through_cache_rule(ecrRepositoryPrefix='local')")
    assert after.returncode == 0, after.stdout + after.stderr
    cached = [line for line in after.stdout.splitlines() if line.startswith("cached")]
    assert cached == [
        f"cached       {source}/team/tool  a pull-through cache serves it: pull {REGISTRY_HOST}/local/tool:TAG "
        f"(rule local, upstream {source}); copy it only to keep tags the upstream may delete"
    ]  # shared/other is outside the rule's upstream prefix


# What a mirror run may load, or not: a module of each library that only a real import loads (the CLI
# registers some modules as lazy ones, which sys.modules lists before anything is run).
LIBRARIES = ("boto3.session", "botocore.client", "jsonschema.validators", "requests.sessions", "rich.console")


def test_a_run_loads_only_what_it_needs(stand_in: StandIn, source: str, tmp_path: Path) -> None:
    """A copy loads botocore (to create the repository) and nothing else of LIBRARIES; a run that finds
    nothing to copy loads none of them: no jsonschema for a good config, no rich without a terminal,
    no AWS SDK when no repository is to be made, urllib3 and not requests."""
    wanted = config({"source": f"{source}/team/tool", "tags": ["1.0"], "repository": "lean/tool"})
    (tmp_path / "mirror.yml").write_text(yaml.safe_dump(wanted))
    code = (
        "import json, sys; from ecrkit import cli; "
        f"code = cli.main(['mirror', '--config', {str(tmp_path / 'mirror.yml')!r}]); "
        f"print(json.dumps([code, sorted(m for m in {LIBRARIES!r} if m in sys.modules)]))"
    )
    env = stand_in.client_env(tmp_path) | {"REQUESTS_CA_BUNDLE": str(stand_in.ca),
                                           "AWS_ECR_CACHE_DIR": str(tmp_path / "ecr")}  # fmt: skip
    loaded = []
    for _ in ("first copy", "no change"):
        done = stand_in.run([sys.executable, "-c", code], env)
        assert done.returncode == 0, done.stdout + done.stderr
        loaded.append(json.loads(done.stdout.splitlines()[-1]))
    assert loaded == [[0, ["botocore.client"]], [0, []]]
    assert "1 unchanged" in done.stdout


def test_a_config_in_parameter_store_copies_as_a_file_does(stand_in: StandIn, source: str, tmp_path: Path) -> None:
    """`--config ssm:/NAME`: the config a SecureString of the stand-in's SSM (moto), the copy as from a file."""
    wanted = config({"source": f"{source}/team/tool", "tags": ["2.0"], "repository": "from-ssm/tool"})
    stand_in.client("ssm").put_parameter(
        Name="/ecrkit/mirror", Value=yaml.safe_dump(wanted), Type="SecureString", Overwrite=True
    )
    env = stand_in.client_env(tmp_path) | {"REQUESTS_CA_BUNDLE": str(stand_in.ca),
                                           "AWS_ECR_CACHE_DIR": str(tmp_path / "ecr"),
                                           "AWS_ENDPOINT_URL_SSM": stand_in.api_endpoint}  # fmt: skip
    argv = [sys.executable, "-m", "ecrkit", "mirror", "--config", "ssm:/ecrkit/mirror", "--json"]
    first = stand_in.run(argv, env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(first.stdout)["counts"]["copied"] == 1
    assert target_digest(stand_in, tmp_path, "from-ssm/tool", "2.0") == source_digest("team/tool", "2.0")
    second = stand_in.run(argv, env)
    assert json.loads(second.stdout)["counts"] == json.loads(first.stdout)["counts"] | {
        "copied": 0,
        "created": 0,
        "unchanged": 1,
    }


def test_shards_are_disjoint_complete_and_keep_a_repository_together() -> None:
    wanted = {
        "target": REGISTRY_HOST,
        "images": [{"source": f"team/app{number}", "tags": ["1", "2", "3.*"]} for number in range(40)],
    }

    def tags_of(host: str, repository: str) -> list[str]:
        return ["3.0", "3.1"] if not repository.endswith("7") else []

    everything = mirror.plan(wanted, tags_of)
    for total in (1, 2, 3, 5):
        shares = [mirror.plan(wanted, tags_of, (index, total)).copies for index in range(1, total + 1)]
        assert sorted((job for share in shares for job in share), key=repr) == sorted(everything.copies, key=repr)
        assert sum(len(share) for share in shares) == len(everything.copies)  # disjoint
        owners = {job.target_repository: index for index, share in enumerate(shares) for job in share}
        for index, share in enumerate(shares):
            assert all(owners[job.target_repository] == index for job in share)  # a repository in one shard
        assert all(shares), f"an empty shard of {total}"  # 40 repositories spread over every shard
        unmatched = [mirror.plan(wanted, tags_of, (index, total)).unmatched for index in range(1, total + 1)]
        assert sorted(item for part in unmatched for item in part) == sorted(everything.unmatched)
    assert mirror.plan(wanted, tags_of, (2, 3)) == mirror.plan(wanted, tags_of, (2, 3))  # stable


def test_the_shard_comes_from_the_option_or_gitlab_ci_and_is_checked() -> None:
    assert mirror.shard_from(None, {}) == (1, 1)
    assert mirror.shard_from(None, {"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "4"}) == (2, 4)
    assert mirror.shard_from("3/5", {"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "4"}) == (3, 5)
    assert mirror.shard_from(None, {"CI_NODE_INDEX": "2"}) == (1, 1)  # `parallel:` sets both
    for bad, source in (("0/2", "--shard"), ("3/2", "--shard"), ("1/", "--shard"), ("\uff11/2", "--shard")):
        with pytest.raises(InputError) as error:
            mirror.shard_from(bad, {})
        assert f"{source}: {bad!r}" in str(error.value)
        assert "1 <= I <= N" in str(error.value)
    with pytest.raises(InputError, match="CI_NODE_INDEX/CI_NODE_TOTAL: '5/4'"):
        mirror.shard_from(None, {"CI_NODE_INDEX": "5", "CI_NODE_TOTAL": "4"})


def test_a_bad_shard_is_refused_before_anything_runs(tmp_path: Path) -> None:
    path = tmp_path / "mirror.yml"
    path.write_text(yaml.safe_dump(config({"source": "alpine", "tags": ["1"]})))
    done = subprocess.run([sys.executable, "-m", "ecrkit", "mirror", "--config", str(path), "--shard", "4/3"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 2
    assert "--shard: '4/3'" in done.stderr


# -- the config, checked before anything runs ---------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            {"target": REGISTRY_HOST, "images": [{"source": "alpine", "tags": ["3.20"], "colour": "red"}]},
            "images/0: Additional",
        ),
        ({"target": REGISTRY_HOST, "images": []}, "images: must have at least 1 item"),
        (
            {"target": "registry.example.com", "images": [{"source": "alpine", "tags": ["1"]}]},
            "target: 'registry.example.com'",
        ),
        ({"target": "public.ecr.aws", "images": [{"source": "alpine", "tags": ["1"]}]}, "a private ECR registry"),
        (
            {"target": REGISTRY_HOST, "images": [{"source": "alpine:3.20", "tags": ["1"]}]},
            "images[0].source: 'alpine:3.20'",
        ),
        ({"target": REGISTRY_HOST, "images": [{"source": "Alpine", "tags": ["1"]}]}, "images[0].source: 'Alpine'"),
    ],
)
def test_bad_configs_are_refused_naming_the_place(tmp_path: Path, content: dict[str, Any], expected: str) -> None:
    path = tmp_path / "mirror.yml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises((FileFormatError, InputError)) as error:
        mirror.load(str(path))
    assert expected in str(error.value)


def test_patterns_expand_against_the_source_tags_and_exact_tags_do_not_list() -> None:
    listed: list[tuple[str, str]] = []

    def tags_of(host: str, repository: str) -> list[str]:
        listed.append((host, repository))
        return ["1.0", "1.1", "1.10", "2.0", "latest"]

    exact = mirror.plan({"target": REGISTRY_HOST, "images": [{"source": "alpine", "tags": ["3.20"]}]}, tags_of)
    assert [job.tag for job in exact.copies] == ["3.20"]
    assert listed == []
    wanted = {
        "target": REGISTRY_HOST,
        "prefix": "hub",
        "images": [{"source": "org/app", "tags": ["1.?", "1.*", "9.*"]}],
    }
    planned = mirror.plan(wanted, tags_of)
    assert [job.tag for job in planned.copies] == ["1.0", "1.1", "1.10"]  # each once
    assert {job.target_repository for job in planned.copies} == {"hub/org/app"}
    assert planned.unmatched == ("docker.io/org/app:9.*",)
    assert listed == [("docker.io", "org/app")]  # listed once for both patterns


def test_the_readmes_mirror_config_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "mirror.yml"
    path.write_text(readme_block("<!-- mirror-config -->", "docs/mirroring.md"))
    config = mirror.load(str(path))
    listed = {
        ("quay.io", "prometheus/node-exporter"): ["v1.8.0", "v1.8.2", "v1.9.0"],
        ("ghcr.io", "example/app"): ["1.3.0", "v1.4.0", "1.5.0", "1.6.0-rc", "2.0.0", "3.0.0", "latest"],
    }
    created = {"v1.4.0": "2026-01-01T00:00:00Z", "1.5.0": "2026-03-01T00:00:00Z", "2.0.0": "2026-02-01T00:00:00Z"}
    planned = mirror.plan(
        config,
        lambda host, repository: listed[(host, repository)],
        created_of=lambda host, repository, platforms, tags: {tag: created[tag] for tag in tags},
    )
    assert [(job.source, job.target_repository, job.platforms) for job in planned.copies] == [
        ("docker.io/library/alpine:3.20", "mirror/library/alpine", ("linux/amd64",)),
        ("docker.io/library/alpine:3.19", "mirror/library/alpine", ("linux/amd64",)),
        ("quay.io/prometheus/node-exporter:v1.8.0", "tools/node-exporter", ("linux/amd64",)),
        ("quay.io/prometheus/node-exporter:v1.8.2", "tools/node-exporter", ("linux/amd64",)),
        ("ghcr.io/example/app:1.5.0", "mirror/example/app", ("linux/amd64", "linux/arm64")),  # the listing's order
        ("ghcr.io/example/app:2.0.0", "mirror/example/app", ("linux/amd64", "linux/arm64")),
        ("ghcr.io/example/app:v1.4.0", "mirror/example/app", ("linux/amd64", "linux/arm64")),
    ]


def test_the_readmes_gitlab_ci_example_spreads_the_set_over_its_parallel_jobs(tmp_path: Path) -> None:
    """The scheduled pipeline parses, runs only on a schedule, and its `parallel: N` jobs, each reading
    CI_NODE_INDEX/CI_NODE_TOTAL as GitLab sets them, copy disjoint shares that add up to the whole set."""
    pipeline = yaml.safe_load(readme_block("<!-- mirror-gitlab-ci -->", "docs/mirroring.md"))
    job = pipeline["mirror"]
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}]
    total = job["parallel"]
    assert isinstance(total, int)
    assert 2 <= total <= 200  # GitLab's bounds for `parallel:`
    (command,) = job["script"]
    argv = command.split(">")[0].split()
    assert argv[:2] == ["ecrkit", "mirror"]
    args = cli.build_parser().parse_args(argv[1:])
    assert args.json
    assert args.shard is None  # the shard comes from GitLab's variables
    assert any(path.startswith("mirror-") for path in job["artifacts"]["paths"])

    path = tmp_path / "mirror.yml"
    path.write_text(readme_block("<!-- mirror-config -->", "docs/mirroring.md"))
    config = mirror.load(str(path))
    many = {**config, "images": [{"source": f"team/app{n}", "tags": ["1", "2"]} for n in range(30)]}
    shares = []
    for index in range(1, total + 1):
        shard = mirror.shard_from(args.shard, {"CI_NODE_INDEX": str(index), "CI_NODE_TOTAL": str(total)})
        shares.append(set(mirror.plan(many, lambda host, repository: [], shard).copies))
    assert set().union(*shares) == set(mirror.plan(many, lambda host, repository: []).copies)
    assert sum(len(share) for share in shares) == 60
