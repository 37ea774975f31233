"""ecrkit.registry against small local servers: the anonymous Bearer token flow that Docker Hub,
quay.io and ghcr.io use, and retries that give up with the last answer named."""

from __future__ import annotations

import http.server as http_server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ecrkit.registry import Registry, RegistryError
from tests.conftest import QuietHandler, free_port


class TokenRegistry(QuietHandler):
    """Asks for a Bearer token from its realm, as Docker Hub does; /broken always answers 503."""

    realm = ""
    seen: list[tuple[str, str]] = []  # noqa: RUF012 - (path, Authorization) of each request

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        if self.path.startswith("/token"):
            self._json(200, {"token": "t0ken" if "scope=repository%3Ateam%2Fapp%3Apull" in self.path else "wrong"})
        elif self.path.startswith("/v2/broken"):
            self._json(503, {"errors": [{"code": "UNAVAILABLE", "message": "try later"}]})
        elif self.headers.get("Authorization") != "Bearer t0ken":
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{self.realm}/token",service="registry.test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._json(200, {"name": "team/app", "tags": ["1", "2"]})

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self.send_body(status, json.dumps(data).encode(), "application/json")


@pytest.fixture
def server() -> Iterator[str]:
    host = f"127.0.0.1:{free_port()}"
    address, port = host.split(":")
    instance = http_server.ThreadingHTTPServer((address, int(port)), TokenRegistry)
    TokenRegistry.realm, TokenRegistry.seen = f"http://{host}", []
    threading.Thread(target=instance.serve_forever, daemon=True).start()
    yield host
    instance.shutdown()


def test_the_anonymous_bearer_flow_gets_a_token_for_the_repository_scope(server: str) -> None:
    registry = Registry(server, plain_http=True)
    assert registry.tags("team/app") == ["1", "2"]
    assert registry.tags("team/app") == ["1", "2"]  # the token is reused
    assert [path.split("?")[0] for path, _ in TokenRegistry.seen] == [
        "/v2/team/app/tags/list", "/token", "/v2/team/app/tags/list", "/v2/team/app/tags/list",
    ]  # fmt: skip


def test_retries_back_off_then_give_up_naming_the_last_answer(server: str) -> None:
    delays: list[float] = []
    registry = Registry(server, plain_http=True, retries=3, backoff=0.5, sleep=delays.append)
    with pytest.raises(RegistryError) as error:
        registry.tags("broken")
    assert delays == [0.5, 1.0, 2.0]
    assert "HTTP 503 UNAVAILABLE: try later" in str(error.value)
    assert len(TokenRegistry.seen) == 4
