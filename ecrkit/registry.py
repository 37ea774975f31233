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
import tempfile
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
SPOOL_IN_MEMORY = 64 * 1024 * 1024  # larger blobs go through a temporary file

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
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host = host
        self.base = f"{'http' if plain_http else 'https'}://{API_HOSTS.get(host, host)}"
        self.credentials = credentials
        self.retries, self.backoff, self.sleep = retries, backoff, sleep
        self.session = requests.Session()
        self.tokens: dict[str, str] = {}

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

    def fetch_blob(self, repository: str, digest: str) -> IO[bytes]:
        """The blob, verified against its digest, in a spooled temporary file."""
        response = self.request("GET", f"/v2/{repository}/blobs/{digest}", repository, stream=True)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - returned to the caller
        hashed = hashlib.sha256()
        for chunk in response.iter_content(1024 * 1024):
            hashed.update(chunk)
            spool.write(chunk)
        if f"sha256:{hashed.hexdigest()}" != digest:
            spool.close()
            raise RegistryError(f"{self.host}/{repository}: blob {digest} arrived with another digest")
        return spool

    def push_blob(self, repository: str, digest: str, blob: IO[bytes]) -> None:
        """POST an upload, PATCH the content, PUT the digest: what every registry, ECR included, takes."""

        def rewound() -> IO[bytes]:
            blob.seek(0)
            return blob

        started = self.request("POST", f"/v2/{repository}/blobs/uploads/", repository, push=True)
        patched = self.request("PATCH", started.headers["Location"], repository, body=rewound, push=True,
                               headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        location = patched.headers["Location"]
        self.request("PUT", f"{location}{'&' if '?' in location else '?'}digest={digest}", repository, push=True)

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
    ) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base}{path}"
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        wanted = {"Accept": ", ".join(MANIFEST_TYPES), **(headers or {})}
        problem = ""
        for attempt in range(self.retries + 1):
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
            if attempt < self.retries:
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


def copy_blob(source: Registry, source_repository: str, target: Registry, target_repository: str, digest: str) -> bool:
    """Copy one blob unless the target has it; True if it was copied."""
    if target.has_blob(target_repository, digest):
        return False
    with source.fetch_blob(source_repository, digest) as blob:
        target.push_blob(target_repository, digest, blob)
    return True


def _retry_after(response: requests.Response) -> float:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.replace(".", "", 1).isdigit() else 0.0


def _error_text(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except ValueError:
        return response.reason or ""
