"""A small client of the OCI distribution API: what copying an image between registries needs.

Manifests are copied byte for byte (so digests, and multi-arch indexes, are preserved), blobs
are verified against their digest on the way through, and every request is retried with
backoff on 429, 5xx and connection errors (honouring Retry-After). Authentication: HTTP Basic
with given credentials (ECR, through the helper; other sources, through the user's docker config
and its credential helpers: docker_credentials), sent to the registry's Bearer token service where
it asks for one (Docker Hub, ghcr.io, quay.io), anonymously when there are none.

Referrers (signatures, SBOMs, attestations attached to a manifest) are found with the OCI 1.1
referrers API where the registry serves it (`referrers`: None where it does not), and by the tag
schema otherwise (`sha256-<hex>` tags: the OCI fallback index, cosign's `.sig`, `.att`, `.sbom`).

Rate limits (Docker Hub's `ratelimit-limit` / `ratelimit-remaining` headers, `100;w=21600`) are read
from every answer. A registry given a `floor` refuses, without asking, a manifest GET (what Docker
Hub counts as a pull; HEAD is free) once the remaining count is at or below it, and a 429 whose
Retry-After is longer than MAX_RETRY_WAIT is not waited for: both raise RateLimited.

HTTP is urllib3's (what requests itself runs on), used directly: a mirror run that finds nothing
to copy is mostly start-up, and requests would add its import and, per connection, a TLS context
of its own. What requests gave is kept: its CA bundle (REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, else
certifi's), proxies from the environment (HTTPS_PROXY, NO_PROXY, ...), redirects followed (a
registry may send blob downloads elsewhere) with the Authorization header dropped on another host.
Written for urllib3 1.26 (Debian 12's, on scheduled hosts) and 2.x alike.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import IO, Any

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError
from urllib3.util.ssl_ import create_urllib3_context

from ecrkit.errors import EcrkitError

log = logging.getLogger(__name__)  # `ecrkit --debug` shows what it calls

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = MANIFEST_TYPES[:2]
OCI_INDEX = MANIFEST_TYPES[0]
RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_RETRY_WAIT = 60.0  # seconds: a longer Retry-After (a rate limit's window) is reported, not slept through
RATE_LIMIT = re.compile(r"\s*(\d+)\s*(?:;\s*w=(\d+))?", re.ASCII)  # "100;w=21600"
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io", "docker.io")
API_HOSTS = {"docker.io": "registry-1.docker.io"}  # where a registry's API answers, when not its name
CHALLENGE = re.compile(r'(\w+)="([^"]*)"', re.ASCII)
CHUNK = 1024 * 1024  # the most of a blob held in memory at once, per copy
TIMEOUT = 60.0  # seconds to connect, and between two reads
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # requests' own, honoured as it did
# urllib3 retries nothing itself (the loop in Registry.request does, with backoff) but follows redirects.
NO_RETRIES = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=10, raise_on_redirect=True)

Body = Callable[[], bytes | IO[bytes]] | None  # called again for each attempt


class RegistryError(EcrkitError):
    """A request that failed for good (after retries), naming the registry and what was asked."""


class RateLimited(RegistryError):
    """The registry's pull budget is spent down to the floor, or it answered 429 for longer than is
    worth waiting: copying from it stops (the rest of the run goes on)."""


@dataclass
class Limit:
    """A registry's rate limit as its last answer stated it."""

    limit: int
    remaining: int
    window: int  # seconds (Docker Hub: 21600, a sliding 6 hours)
    read_at: float  # time.time() of that answer
    retry_after: float = 0.0  # seconds, from a 429

    def resets_by(self) -> float:
        """When the budget is whole again at the latest (the window is sliding: pulls return as they age out)."""
        return self.read_at + (self.retry_after or self.window)

    def as_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "remaining": self.remaining, "window_seconds": self.window,
                "resets_by": _utc(self.resets_by())}  # fmt: skip


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
        floor: int | None = None,
    ) -> None:
        self.host = host
        self.base = f"{'http' if plain_http else 'https'}://{API_HOSTS.get(host, host)}"
        self.credentials = credentials
        self.retries, self.backoff, self.sleep = retries, backoff, sleep
        self.pool = _pool_manager(self.base, max(10, connections))
        self.basic = (
            "Basic " + base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode("latin-1")).decode()
            if credentials
            else ""
        )  # as requests encodes it
        self.token_pool: urllib3.PoolManager | None = None  # the token service's, when it asks for one
        self.tokens: dict[str, str] = {}
        self.lock = threading.Lock()
        self.bytes_read = 0  # blob bytes read from this registry
        self.floor = floor  # pulls (manifest GETs) left to others: none is made at or below it
        self.limit: Limit | None = None  # the rate limit its answers state, if any
        self.stopped: RateLimited | None = None  # why no more pulls are made from it in this run
        self.listings: dict[str, threading.Lock] = {}
        self.listed: dict[str, list[str]] = {}
        self.serves_referrers: bool | None = None  # the OCI 1.1 referrers API: unknown until asked
        self.probing_referrers = threading.Lock()  # held by the job that asks first
        self.answered = False  # whether any request has had an answer (and its rate-limit headers, if any)
        self.reading_limit = threading.Lock()  # held by the job that reads the limit before the first pull

    # -- what a copy needs -----------------------------------------------------------------

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest (GET: a pull, where pulls are counted; refused as RateLimited at the floor)."""
        self._read_limit(repository, reference)
        self._take_pull()
        response = self.request("GET", f"/v2/{repository}/manifests/{reference}", repository, accept_missing=True)
        if response.status == 404:
            return None
        media_type = response.headers.get("Content-Type", "").split(";")[0]
        return Manifest(response.data, media_type)

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest a tag points to, or None if it does not exist (HEAD: no download)."""
        response = self.request("HEAD", f"/v2/{repository}/manifests/{reference}", repository, accept_missing=True)
        if response.status == 404:
            return None
        return response.headers.get("Docker-Content-Digest") or self.manifest(repository, reference).digest  # type: ignore[union-attr]

    def head_manifest(self, repository: str, reference: str) -> tuple[str, str] | None:
        """(digest, media type) of what a reference points to, or None if it does not exist (HEAD: not a pull)."""
        response = self.request("HEAD", f"/v2/{repository}/manifests/{reference}", repository, accept_missing=True)
        if response.status == 404:
            return None
        media_type = response.headers.get("Content-Type", "").split(";")[0]
        found = response.headers.get("Docker-Content-Digest")
        if not found:
            manifest = self.manifest(repository, reference)
            return (manifest.digest, manifest.media_type) if manifest else None
        return found, media_type

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> bool:
        """PUT the manifest; True when the registry says it indexed the manifest's subject (OCI-Subject)."""
        headers = {"Content-Type": manifest.media_type}
        response = self.request("PUT", f"/v2/{repository}/manifests/{reference}", repository,
                                body=lambda: manifest.body, headers=headers, push=True)  # fmt: skip
        return bool(response.headers.get("OCI-Subject"))

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        """The descriptors of the manifests that name `digest` as their subject, by the OCI 1.1 referrers
        API; None when the registry does not serve it (a 404: the spec forbids one from a registry that
        does), which is remembered for the run. Until that is known, one job asks and the others wait for its
        answer: a registry without the API costs the run one request, not one per tag."""
        if self.serves_referrers is None:
            with self.probing_referrers:
                if self.serves_referrers is None:
                    return self._referrers(repository, digest)
        if self.serves_referrers is False:
            return None
        return self._referrers(repository, digest)

    def _referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = []
        path: str | None = f"/v2/{repository}/referrers/{digest}"
        while path:
            response = self.request("GET", path, repository, accept_missing=True, headers={"Accept": OCI_INDEX})
            if response.status == 404 or "json" not in response.headers.get("Content-Type", ""):
                self.serves_referrers = False
                return None
            self.serves_referrers = True
            found += json.loads(response.data).get("manifests") or []
            link = re.match(r"<([^>]+)>", response.headers.get("Link", ""))
            path = link.group(1) if link else None
        return found

    def tags(self, repository: str) -> list[str]:
        found: list[str] = []
        path: str | None = f"/v2/{repository}/tags/list?n=1000"
        while path:
            response = self.request("GET", path, repository)
            found += json.loads(response.data).get("tags") or []
            link = re.match(r"<([^>]+)>", response.headers.get("Link", ""))
            path = link.group(1) if link else None
        return found

    def tag_list(self, repository: str) -> list[str]:
        """The repository's tags, listed once per run (the plan's patterns and the tag schema's referrers
        share the one listing)."""
        with self.lock:
            listing = self.listings.get(repository)
            if listing is None:
                listing = self.listings[repository] = threading.Lock()
        with listing:  # one request, however many jobs ask at once
            if repository not in self.listed:
                self.listed[repository] = self.tags(repository)
            return self.listed[repository]

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", repository, accept_missing=True, push=True)
        return response.status == 200

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
        if mount_from and started.status == 201:
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
    ) -> urllib3.BaseHTTPResponse:
        """The answer (its body read, unless `stream`: then read it, or close it); retried on 429, 5xx and
        connection errors up to `attempts` times (0: retries + 1)."""
        url = path if path.startswith("http") else f"{self.base}{path}"
        log.debug("%s %s", method, url.split("?")[0])  # --debug: never a header (credentials) or a query (uploads)
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        wanted = {"Accept": ", ".join(MANIFEST_TYPES), **(headers or {})}
        problem = ""
        attempts = attempts or self.retries + 1
        for attempt in range(attempts):
            try:
                response = self._authorised(method, url, scope, wanted, body=body, stream=stream)
            except HTTPError as exc:  # connecting, TLS, or the connection lost: worth another attempt
                cause = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
                problem, delay = f"cannot connect ({cause.__class__.__name__})", self.backoff * 2**attempt
            else:
                self.answered = True
                self._note_limit(response)
                if response.status < 400 or (accept_missing and response.status == 404):
                    return response
                problem = f"HTTP {response.status} {_error_text(response)}"
                response.drain_conn()
                if response.status not in RETRY_STATUSES:
                    break
                delay = _retry_after(response) or self.backoff * 2**attempt
                if response.status == 429 and (delay > MAX_RETRY_WAIT or self._spent()):
                    raise self._stop(f"HTTP 429, retry after {delay:.0f} s" if delay else "HTTP 429")
            if attempt < attempts - 1:
                self.sleep(delay)
        raise RegistryError(f"{method} {self.host}{path if not path.startswith('http') else ''}: {problem}")

    # -- rate limits ---------------------------------------------------------------------------

    def _note_limit(self, response: urllib3.BaseHTTPResponse) -> None:
        remaining = RATE_LIMIT.match(response.headers.get("ratelimit-remaining", "") or "")
        limit = RATE_LIMIT.match(response.headers.get("ratelimit-limit", "") or "")
        if not remaining and response.status != 429:
            return
        with self.lock:
            if remaining:
                window = int(remaining.group(2) or (limit.group(2) if limit else 0) or 0)
                self.limit = Limit(int(limit.group(1)) if limit else int(remaining.group(1)), int(remaining.group(1)),
                                   window, time.time())  # fmt: skip
            if response.status == 429 and self.limit is not None:
                self.limit.retry_after = _retry_after(response)

    def _read_limit(self, repository: str, reference: str) -> None:
        """Before the first pull from a registry with a floor that has not answered yet in this run: a HEAD
        of the same manifest (not a pull) for its rate-limit headers, so that the first pull is held to the
        floor as the others are. One job asks; the others wait for it. Any earlier answer (a comparison's
        HEAD, a tag list) carried the headers already."""
        if self.floor is None or self.answered:
            return
        with self.reading_limit:
            if not self.answered:
                self.request("HEAD", f"/v2/{repository}/manifests/{reference}", repository, accept_missing=True)

    def _spent(self) -> bool:
        return self.limit is not None and self.limit.remaining <= (self.floor or 0)

    def _take_pull(self) -> None:
        """Refuse a pull once the budget is at the floor; else count it against the budget at once (the
        answer's header then corrects it), so that concurrent copies do not all pass the same check."""
        with self.lock:
            if self.stopped is not None:
                raise self.stopped
            if self.floor is None or self.limit is None:
                return
            if self.limit.remaining > self.floor:
                self.limit.remaining -= 1
                return
        raise self._stop(f"{self.limit.remaining} of {self.limit.limit} pulls remain, the floor is {self.floor}")

    def _stop(self, why: str) -> RateLimited:
        with self.lock:
            if self.stopped is None:
                limit = self.limit
                if limit is not None:
                    why += f"; the window ({limit.window} s) is whole again by {_utc(limit.resets_by())}"
                self.stopped = RateLimited(f"{self.host}: rate limit: {why}; no more copies from it in this run")
            return self.stopped

    def _authorised(
        self, method: str, url: str, scope: str, headers: dict[str, str], *, body: Body, stream: bool
    ) -> urllib3.BaseHTTPResponse:
        for _ in range(2):  # the second time with the token the first answer asked for
            token = self.tokens.get(scope)
            authorization = f"Bearer {token}" if token else self.basic
            sent = {**headers, **({"Authorization": authorization} if authorization else {})}
            response = self.pool.request(method, url, headers=sent, body=body() if body else None,
                                         preload_content=not stream, retries=NO_RETRIES, timeout=TIMEOUT)  # fmt: skip
            challenge = response.headers.get("WWW-Authenticate", "")
            if response.status != 401 or not challenge.startswith("Bearer ") or token:
                return response
            response.drain_conn()
            self.tokens[scope] = self._token(dict(CHALLENGE.findall(challenge)), scope)
        return response

    def _token(self, challenge: dict[str, str], scope: str) -> str:
        realm = challenge.get("realm", "")
        query = urllib.parse.urlencode({"service": challenge.get("service", ""), "scope": scope})
        url = f"{realm}{'&' if '?' in realm else '?'}{query}"
        self.token_pool = self.token_pool or _pool_manager(realm, 1)
        response = self.token_pool.request("GET", url, headers={"Authorization": self.basic} if self.basic else {},
                                           retries=NO_RETRIES, timeout=TIMEOUT)  # fmt: skip
        if response.status != 200:
            raise RegistryError(f"{self.host}: the token service refused {scope} (HTTP {response.status})")
        data = json.loads(response.data)
        return str(data.get("token") or data.get("access_token") or "")


class BlobReader:
    """A blob being read from its registry: read() hashes and counts; verify() after the last byte.
    It has a length and no seek (so that it is never rewound)."""

    def __init__(
        self, response: urllib3.BaseHTTPResponse, digest: str, size: int, counted: Callable[[int], None]
    ) -> None:
        self.response, self.digest, self.size, self.counted = response, digest, size, counted
        self.hashed = hashlib.sha256()
        self.seen = 0

    def __len__(self) -> int:
        return max(self.size, 0)

    def read(self, size: int = CHUNK) -> bytes:
        data = self.response.read(min(size if size > 0 else CHUNK, CHUNK), decode_content=False)
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


def docker_credentials(host: str, environ: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """(username, secret) for a source registry the way docker finds them: the docker config
    ($DOCKER_CONFIG/config.json, else ~/.docker/config.json), its credHelpers entry for the host, else its
    credsStore, else the `auth` its `auths` entry holds; None (anonymous) when it names none. Nothing
    read here is logged or put in an error."""
    directory = environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    path = os.path.join(directory, "config.json")
    try:
        with open(path, encoding="utf-8") as stream:
            config = json.load(stream)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise EcrkitError(f"{path}: the docker config cannot be read ({exc.__class__.__name__})") from None
    if not isinstance(config, dict):
        raise EcrkitError(f"{path}: the docker config is not a JSON object")
    keys = DOCKER_HUB_KEYS if host == "docker.io" else (host,)
    helpers = config.get("credHelpers") or {}
    auths = {_registry_key(key): value for key, value in (config.get("auths") or {}).items()}
    helper = next((helpers[key] for key in helpers if _registry_key(key) in map(_registry_key, keys)), "")
    for name in (helper, "" if helper else config.get("credsStore") or ""):
        if name:
            found = _from_helper(str(name), keys[0], path)
            if found:
                return found
    entry = auths.get(_registry_key(keys[0])) or {}
    if isinstance(entry, dict) and entry.get("auth"):
        try:
            username, _, secret = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except ValueError:
            raise EcrkitError(f"{path}: auths entry for {host}: `auth` is not base64 of user:password") from None
        return username, secret
    return None


def _registry_key(key: str) -> str:
    """A docker config key as the host it names (docker's own reading: no scheme, no path); Docker Hub's
    names all as docker.io."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if host in DOCKER_HUB_KEYS else host


def _from_helper(name: str, server: str, path: str) -> tuple[str, str] | None:
    """docker-credential-<name> get: None when it has no credentials for the server."""
    import subprocess  # noqa: PLC0415 - only a docker config that names a helper needs it

    binary = f"docker-credential-{name}"
    log.debug("%s get <<< %s", binary, server)  # --debug: the call, never its answer
    try:
        done = subprocess.run([binary, "get"], input=server, capture_output=True, text=True, check=False, timeout=60)
    except FileNotFoundError:
        raise EcrkitError(f"{path} names the credential helper {name!r}: {binary} is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise EcrkitError(f"{binary} get {server}: no answer after 60 s") from None
    if done.returncode != 0:
        return None  # "credentials not found": anonymous, as docker goes on
    try:
        answer = json.loads(done.stdout)
        return str(answer["Username"]), str(answer["Secret"])
    except (ValueError, KeyError, TypeError):
        raise EcrkitError(f"{binary} get {server}: its answer is not the credential helper protocol's") from None


def _utc(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def _retry_after(response: urllib3.BaseHTTPResponse) -> float:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.replace(".", "", 1).isdigit() else 0.0


def _error_text(response: urllib3.BaseHTTPResponse) -> str:
    try:
        errors = json.loads(response.data).get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError):
        return response.reason or ""


def _pool_manager(url: str, connections: int) -> urllib3.PoolManager:
    """Connections for a registry (or its token service): through the environment's proxy for the URL
    unless NO_PROXY exempts its host, as requests chose; TLS with the CA bundle requests would use."""
    parts = urllib.parse.urlsplit(url)
    # A blob's body is sent in urllib3's 16 KiB reads (8 KiB under urllib3 1.26). Sending CHUNK at a time
    # (blocksize) was measured on the benchmark's first copy: 0.1 CPU-s less, no faster, 15 MiB more peak
    # memory (8 jobs' 1 MiB buffers, kept by the allocator). Not taken.
    options: dict[str, Any] = {"num_pools": 4, "maxsize": connections}
    if parts.scheme == "https":
        options["ssl_context"] = _tls_context()
    proxy = _proxy(parts.scheme, parts.hostname or "")
    if proxy:
        return urllib3.ProxyManager(proxy if "://" in proxy else f"http://{proxy}", **options)
    return urllib3.PoolManager(**options)


def _proxy(scheme: str, host: str) -> str:
    """The proxy the environment names for the scheme, unless NO_PROXY exempts the host: urllib's reading
    of *_proxy variables, as requests used. No such variable, no import of urllib.request."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return ""
    import urllib.request  # noqa: PLC0415 - only where a proxy may be set

    proxy = urllib.request.getproxies().get(scheme, "")
    return "" if not proxy or urllib.request.proxy_bypass(host) else proxy


@cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for the run, verifying against REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) when set, else
    certifi's bundle (requests' default), else the system's."""
    context = create_urllib3_context()
    bundle = next((os.environ[name] for name in CA_BUNDLE_VARIABLES if os.environ.get(name)), "")
    if not bundle:
        try:
            import certifi  # noqa: PLC0415 - requests' dependency: only its path is wanted

            bundle = certifi.where()
        except ImportError:
            context.load_default_certs()
            return context
    if os.path.isdir(bundle):
        context.load_verify_locations(capath=bundle)
    else:
        context.load_verify_locations(cafile=bundle)
    return context
