"""A small client of the OCI distribution API: what copying an image between registries needs.

Manifests are copied byte for byte (so digests, and multi-arch indexes, are preserved), blobs
are verified against their digest on the way through, and every request is retried with
backoff on 429, 5xx and connection errors (honouring Retry-After). Authentication: HTTP Basic
with given credentials (ECR, through the helper), or the registry's anonymous Bearer token
flow (Docker Hub, ghcr.io, quay.io).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import requests

from ecrkit.errors import EcrkitError

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = MANIFEST_TYPES[:2]
RETRY_STATUSES = (429, 500, 502, 503, 504)
API_HOSTS = {"docker.io": "registry-1.docker.io"}  # where a registry's API answers, when not its name
CHALLENGE = re.compile(r'(\w+)="([^"]*)"', re.ASCII)
CHUNK = 1024 * 1024  # the most of a blob held in memory at once, per copy

Body = Callable[[], bytes | IO[bytes]] | None  # called again for each attempt


class RegistryError(EcrkitError):
    """A request that failed for good (after retries), naming the registry and what was asked."""


class Manifest:
    def __init__(self, body: bytes, media_type: str) -> None:
        self.body = body
        self.media_type = media_type
        self.digest = "sha256:" + hashlib.sha256(body).hexdigest()

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def children(self) -> list[str]:
        """Digests of the manifests an index lists."""
        return [entry["digest"] for entry in json.loads(self.body)["manifests"]]

    def blobs(self) -> list[dict[str, Any]]:
        """Descriptors of the config and layers of an image manifest."""
        document = json.loads(self.body)
        return [document["config"], *document.get("layers", [])]


class Registry:
    def __init__(
        self,
        host: str,
        *,
        credentials: tuple[str, str] | None = None,
        plain_http: bool = False,
        retries: int = 5,
        connections: int = 10,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host = host
        self.base = f"{'http' if plain_http else 'https'}://{API_HOSTS.get(host, host)}"
        self.credentials = credentials
        self.retries, self.backoff, self.sleep = retries, backoff, sleep
        self.session = requests.Session()
        self.tokens: dict[str, str] = {}
        self.lock = threading.Lock()
        self.bytes_read = 0  # blob bytes read from this registry
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(10, connections))
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    # -- what a copy needs -----------------------------------------------------------------

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        response = self.request("GET", f"/v2/{repository}/manifests/{reference}", repository, accept_missing=True)
        if response.status_code == 404:
            return None
        media_type = response.headers.get("Content-Type", "").split(";")[0]
        return Manifest(response.content, media_type)

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest a tag points to, or None if it does not exist (HEAD: no download)."""
        response = self.request("HEAD", f"/v2/{repository}/manifests/{reference}", repository, accept_missing=True)
        if response.status_code == 404:
            return None
        return response.headers.get("Docker-Content-Digest") or self.manifest(repository, reference).digest  # type: ignore[union-attr]

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        headers = {"Content-Type": manifest.media_type}
        self.request("PUT", f"/v2/{repository}/manifests/{reference}", repository, body=lambda: manifest.body,
                     headers=headers, push=True)  # fmt: skip

    def tags(self, repository: str) -> list[str]:
        found: list[str] = []
        path: str | None = f"/v2/{repository}/tags/list?n=1000"
        while path:
            response = self.request("GET", path, repository)
            found += response.json().get("tags") or []
            link = re.match(r"<([^>]+)>", response.headers.get("Link", ""))
            path = link.group(1) if link else None
        return found

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", repository, accept_missing=True, push=True)
        return response.status_code == 200

    def open_blob(self, repository: str, digest: str) -> BlobReader:
        """The blob as a stream that hashes and counts what it reads (nothing is held in memory)."""
        response = self.request("GET", f"/v2/{repository}/blobs/{digest}", repository, stream=True)
        size = int(response.headers.get("Content-Length") or -1)
        return BlobReader(response, digest, size, self.count_read)

    def count_read(self, size: int) -> None:
        with self.lock:
            self.bytes_read += size

    def start_upload(self, repository: str, digest: str, mount_from: str = "") -> str | None:
        """POST an upload; with mount_from, ask the registry to mount the blob from that repository of
        its own instead. None when it mounted it, else the upload's Location."""
        query = f"?mount={digest}&from={mount_from}" if mount_from else ""
        started = self.request("POST", f"/v2/{repository}/blobs/uploads/{query}", repository, push=True)
        if mount_from and started.status_code == 201:
            return None
        return str(started.headers["Location"])

    def push_blob(
        self, repository: str, digest: str, size: int, body: Callable[[], IO[bytes]], check: Callable[[], None]
    ) -> None:
        """PATCH the content to a new upload, `check` it, then PUT its digest: what every registry, ECR
        included, takes. `body` opens the content afresh for each attempt; a failed attempt starts a new
        upload (a half-sent one cannot be continued)."""
        for attempt in range(self.retries + 1):
            location = self.start_upload(repository, digest)
            assert location is not None
            try:
                patched = self.request("PATCH", location, repository, body=body, push=True, attempts=1,
                                       headers={"Content-Type": "application/octet-stream",
                                                "Content-Length": str(size)})  # fmt: skip
            except RegistryError:
                if attempt == self.retries:
                    raise
                self.sleep(self.backoff * 2**attempt)
                continue
            check()
            location = patched.headers["Location"]
            self.request("PUT", f"{location}{'&' if '?' in location else '?'}digest={digest}", repository, push=True)
            return

    # -- requests, authentication and retries ------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        repository: str,
        *,
        body: Body = None,
        headers: dict[str, str] | None = None,
        accept_missing: bool = False,
        push: bool = False,
        stream: bool = False,
        attempts: int = 0,
    ) -> requests.Response:
        """The answer; retried on 429, 5xx and connection errors up to `attempts` times (0: retries + 1)."""
        url = path if path.startswith("http") else f"{self.base}{path}"
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        wanted = {"Accept": ", ".join(MANIFEST_TYPES), **(headers or {})}
        problem = ""
        attempts = attempts or self.retries + 1
        for attempt in range(attempts):
            try:
                response = self._authorised(method, url, scope, wanted, body=body, stream=stream)
            except requests.ConnectionError as exc:
                problem, delay = f"cannot connect ({exc.__class__.__name__})", self.backoff * 2**attempt
            else:
                if response.status_code < 400 or (accept_missing and response.status_code == 404):
                    return response
                problem = f"HTTP {response.status_code} {_error_text(response)}"
                if response.status_code not in RETRY_STATUSES:
                    break
                delay = _retry_after(response) or self.backoff * 2**attempt
            if attempt < attempts - 1:
                self.sleep(delay)
        raise RegistryError(f"{method} {self.host}{path if not path.startswith('http') else ''}: {problem}")

    def _authorised(
        self, method: str, url: str, scope: str, headers: dict[str, str], *, body: Body, stream: bool
    ) -> requests.Response:
        for _ in range(2):  # the second time with the token the first answer asked for
            token = self.tokens.get(scope)
            auth = None if token else self.credentials
            sent = {**headers, **({"Authorization": f"Bearer {token}"} if token else {})}
            response = self.session.request(method, url, headers=sent, data=body() if body else None, auth=auth,
                                            stream=stream, timeout=60)  # fmt: skip
            challenge = response.headers.get("WWW-Authenticate", "")
            if response.status_code != 401 or not challenge.startswith("Bearer ") or token:
                return response
            self.tokens[scope] = self._token(dict(CHALLENGE.findall(challenge)), scope)
        return response

    def _token(self, challenge: dict[str, str], scope: str) -> str:
        params = {"service": challenge.get("service", ""), "scope": scope}
        response = self.session.get(challenge.get("realm", ""), params=params, auth=self.credentials, timeout=60)
        if response.status_code != 200:
            raise RegistryError(f"{self.host}: the token service refused {scope} (HTTP {response.status_code})")
        data = response.json()
        return str(data.get("token") or data.get("access_token") or "")


class BlobReader:
    """A blob being read from its registry: read() hashes and counts; verify() after the last byte.
    It has a length (so that requests sends Content-Length) and no seek (so that it is never rewound)."""

    def __init__(self, response: requests.Response, digest: str, size: int, counted: Callable[[int], None]) -> None:
        self.response, self.digest, self.size, self.counted = response, digest, size, counted
        self.hashed = hashlib.sha256()
        self.seen = 0

    def __len__(self) -> int:
        return max(self.size, 0)

    def read(self, size: int = CHUNK) -> bytes:
        data = self.response.raw.read(min(size if size > 0 else CHUNK, CHUNK), decode_content=False)
        self.hashed.update(data)
        self.seen += len(data)
        self.counted(len(data))
        return bytes(data)

    def verify(self, host: str, repository: str, size: int) -> None:
        """Raise unless every byte arrived and they have the digest they were asked for by."""
        self.response.close()
        if self.seen != size or f"sha256:{self.hashed.hexdigest()}" != self.digest:
            raise RegistryError(f"{host}/{repository}: blob {self.digest} arrived with another digest or size")

    def close(self) -> None:
        self.response.close()


def stream_blob(  # noqa: PLR0917 - from where to where, and what
    source: Registry, source_repository: str, target: Registry, target_repository: str, digest: str, size: int
) -> None:
    """Copy one blob of `size` bytes (its descriptor's) as it is read, at most CHUNK of it in memory; the
    digest is checked before the upload is committed."""
    readers: list[BlobReader] = []

    def body() -> IO[bytes]:
        for old in readers:
            old.close()
        readers.append(source.open_blob(source_repository, digest))
        return readers[-1]  # type: ignore[return-value]

    def check() -> None:
        readers[-1].verify(source.host, source_repository, size)

    try:
        target.push_blob(target_repository, digest, size, body, check)
    finally:
        for reader in readers:
            reader.close()


def _retry_after(response: requests.Response) -> float:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.replace(".", "", 1).isdigit() else 0.0


def _error_text(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except ValueError:
        return response.reason or ""
