"""ecrkit.registry and Docker Hub: credentials the way docker finds them in the user's docker config (never
from the mirror config), the rate-limit headers read, a floor that refuses pulls without asking, and a 429
whose Retry-After is a rate limit's window reported instead of slept through."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from ecrkit.errors import EcrkitError
from ecrkit.registry import RateLimited, Registry, docker_credentials
from tests.conftest import QuietHandler, free_port


def write_config(directory: Path, config: object) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(directory)}


def helper(bin_dir: Path, name: str, server: str, user: str, secret: str) -> None:
    """A docker-credential-<name> that knows one server, answering as the protocol says."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / f"docker-credential-{name}"
    path.write_text(
        "#!/bin/sh\nread -r server\n"
        f"[ \"$server\" = '{server}' ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\n"
        f'echo \'{{"ServerURL": "{server}", "Username": "{user}", "Secret": "{secret}"}}\'\n'
    )
    path.chmod(0o755)


def basic(user: str, secret: str) -> str:
    return base64.b64encode(f"{user}:{secret}".encode()).decode()


def test_credentials_come_from_the_docker_config_as_docker_finds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    helper(tmp_path / "bin", "hub", "https://index.docker.io/v1/", "hubuser", "hub-secret")
    helper(tmp_path / "bin", "store", "quay.io", "quayuser", "quay-secret")
    env = write_config(tmp_path / "d", {
        "auths": {"https://index.docker.io/v1/": {}, "ghcr.io": {"auth": basic("gh", "gh-secret")},
                  "registry.local:5000": {"auth": basic("local", "pa:ss")}},
        "credHelpers": {"index.docker.io": "hub", "registry.local:5000": "store"},
        "credsStore": "store",
    })  # fmt: skip
    assert docker_credentials("docker.io", env) == ("hubuser", "hub-secret")  # credHelpers, Docker Hub's names
    assert docker_credentials("quay.io", env) == ("quayuser", "quay-secret")  # credsStore
    assert docker_credentials("ghcr.io", env) == ("gh", "gh-secret")  # the store has none: the auths entry
    assert docker_credentials("registry.local:5000", env) == ("local", "pa:ss")  # its helper has none either
    assert docker_credentials("example.org", env) is None  # anonymous

    plain = write_config(tmp_path / "plain", {"auths": {"https://index.docker.io/v1/": {"auth": basic("u", "p")}}})
    assert docker_credentials("docker.io", plain) == ("u", "p")
    assert docker_credentials("docker.io", {"DOCKER_CONFIG": str(tmp_path / "none")}) is None
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no DOCKER_CONFIG: ~/.docker/config.json
    write_config(tmp_path / "home" / ".docker", {"auths": {"ghcr.io": {"auth": basic("h", "q")}}})
    assert docker_credentials("ghcr.io", {}) == ("h", "q")


def test_a_bad_docker_config_is_named_without_its_content(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"auths": {"ghcr.io": {"auth": "s3cret-not-json')
    with pytest.raises(EcrkitError) as error:
        docker_credentials("ghcr.io", {"DOCKER_CONFIG": str(tmp_path)})
    assert str(tmp_path / "config.json") in str(error.value)
    assert "s3cret" not in str(error.value)
    env = write_config(tmp_path / "h", {"credHelpers": {"ghcr.io": "absent"}})
    with pytest.raises(EcrkitError, match="docker-credential-absent is not on PATH"):
        docker_credentials("ghcr.io", env)


class Hub(QuietHandler):
    """Manifests behind Basic credentials, with Docker Hub's rate-limit headers; a manifest GET is a pull;
    `retry_after` set: the next pull answers 429 with it."""

    remaining = 0
    retry_after = ""
    seen: list[str] = []  # noqa: RUF012 - "METHOD path" of each request

    def do_HEAD(self) -> None:
        self.answer()

    def do_GET(self) -> None:
        self.answer()

    def answer(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        if self.headers.get("Authorization") != f"Basic {basic('hubuser', 'hub-secret')}":
            self.send_body(401, b"")
            return
        if self.command == "GET" and self.retry_after:
            Hub.retry_after, after = "", self.retry_after
            self.send_response(429)
            self.send_header("Retry-After", after)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.command == "GET":
            Hub.remaining -= 1
        body = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        self.send_header("Docker-Content-Digest", "sha256:" + "0" * 64)
        self.send_header("ratelimit-limit", "100;w=21600")
        self.send_header("ratelimit-remaining", f"{self.remaining};w=21600")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)


@pytest.fixture
def hub() -> Iterator[str]:
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Hub)
    Hub.remaining, Hub.retry_after, Hub.seen = 0, "", []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{port}"
    server.shutdown()


def test_a_head_reads_the_limit_and_pulls_stop_at_the_floor_without_asking(hub: str) -> None:
    Hub.remaining = 4
    registry = Registry(hub, credentials=("hubuser", "hub-secret"), plain_http=True, floor=2)
    assert registry.head_manifest("library/alpine", "3.20") is not None
    assert registry.limit is not None
    assert (registry.limit.limit, registry.limit.remaining, registry.limit.window) == (100, 4, 21600)
    registry.manifest("library/alpine", "3.20")
    registry.manifest("library/alpine", "3.19")
    with pytest.raises(RateLimited) as error:
        registry.manifest("library/alpine", "3.18")
    assert "2 of 100 pulls remain, the floor is 2" in str(error.value)
    assert "the window (21600 s) is whole again by" in str(error.value)
    assert [line.split()[0] for line in Hub.seen] == ["HEAD", "GET", "GET"]  # the third pull was not asked for
    with pytest.raises(RateLimited):  # and no later one either
        registry.manifest("library/busybox", "1")
    assert len(Hub.seen) == 3


def test_a_short_retry_after_is_waited_for_and_a_long_one_stops_the_source(hub: str) -> None:
    Hub.remaining = 50
    delays: list[float] = []
    registry = Registry(hub, credentials=("hubuser", "hub-secret"), plain_http=True, sleep=delays.append, floor=0)
    Hub.retry_after = "2"
    assert registry.manifest("library/alpine", "3.20") is not None
    assert delays == [2.0]
    Hub.retry_after = "3600"
    with pytest.raises(RateLimited, match="HTTP 429, retry after 3600 s"):
        registry.manifest("library/alpine", "3.19")
    assert delays == [2.0]  # not slept through
