"""What ecrkit.registry kept of requests when it moved to urllib3: the environment's proxy (and
NO_PROXY), redirects followed with the credentials left behind on another host."""

from __future__ import annotations

import hashlib
import http.server as http_server
import threading
from collections.abc import Iterator

import pytest

from ecrkit.registry import Registry, RegistryError
from tests.conftest import QuietHandler, free_port

BLOB = b"a blob that lives elsewhere"
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


class Recorder(QuietHandler):
    """Records (request line target, Authorization); /v2/.../blobs/ redirects to `elsewhere`, anything
    else answers a tag list (as a forward proxy, it answers for the registry it was asked for)."""

    seen: list[tuple[str, str]] = []  # noqa: RUF012 - shared by the handler threads of a test
    elsewhere = ""

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        if "/blobs/" in self.path and self.elsewhere:
            self.send_response(307)
            self.send_header("Location", f"{self.elsewhere}/storage/blob")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_body(200, BLOB if self.path.endswith("/storage/blob") else b'{"tags": ["1"]}')


@pytest.fixture
def recorder() -> Iterator[str]:
    port = free_port()
    server = http_server.ThreadingHTTPServer(("127.0.0.1", port), Recorder)
    Recorder.seen, Recorder.elsewhere = [], ""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{port}"
    server.shutdown()


def test_requests_go_through_the_environments_proxy_unless_no_proxy_exempts_the_host(
    recorder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://{recorder}")
    assert Registry("registry.test:5000", plain_http=True).tags("team/app") == ["1"]
    assert Recorder.seen == [("http://registry.test:5000/v2/team/app/tags/list?n=1000", "")]

    monkeypatch.setenv("no_proxy", "registry.test")
    with pytest.raises(RegistryError, match="cannot connect"):  # straight to registry.test, which is nowhere
        Registry("registry.test:5000", plain_http=True, retries=0).tags("team/app")
    assert len(Recorder.seen) == 1


def test_a_redirect_is_followed_and_the_credentials_stay_with_the_registry(
    recorder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    Recorder.elsewhere = f"http://localhost:{recorder.split(':')[1]}"  # the same server, named as another host
    registry = Registry(recorder, credentials=("AWS", "s3cret"), plain_http=True)
    reader = registry.open_blob("team/app", DIGEST)
    while reader.read():
        pass
    reader.verify(registry.host, "team/app", len(BLOB))
    (first, first_auth), (second, second_auth) = Recorder.seen
    assert first == f"/v2/team/app/blobs/{DIGEST}"
    assert first_auth.startswith("Basic ")
    assert (second, second_auth) == ("/storage/blob", "")
    assert registry.bytes_read == len(BLOB)
