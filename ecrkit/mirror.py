"""`ecrkit mirror`: copy images the pull-through cache cannot serve into ECR.

The config (YAML) lists images and their tags (exact, or shell patterns matched against the
source's tag list). Missing repositories are created (boto3); a tag whose digest is already
the target's is skipped; manifests are copied byte for byte, so multi-arch indexes and digests
are preserved; requests are retried with backoff (ecrkit.registry); copies run concurrently.
ECR credentials come from the credential helper, as for any docker pull: no pasted token.

    target: 123456789012.dkr.ecr.us-east-1.amazonaws.com
    prefix: mirror                      # optional: repositories go under it
    plain_http: [registry.local:5000]   # optional: source registries without TLS
    images:
      - source: alpine                  # docker.io/library/alpine
        tags: ["3.20", "3.19"]
      - source: quay.io/prometheus/node-exporter
        tags: ["v1.8.*"]
        repository: tools/node-exporter # optional: the target repository's own name
    referrers: true                     # optional (default): copy signatures, SBOMs, attestations too
    rate_limit_floor: 10                # optional: pulls left to others of a source's rate limit

Referrers (what names a copied manifest as its subject) are found by the OCI 1.1 referrers API where
the source serves it and by the tag schema (`sha256-<hex>`, `.sig`, `.att`, `.sbom` tags) always; they
are copied with their digests, and where the target does not serve the API either, the referrers
index under its `sha256-<hex>` tag is kept up to date, as OCI clients do. Source credentials come from
the user's docker config (ecrkit.registry.docker_credentials); a source's rate limit stops copies from
it at the floor, and the run goes on with the others.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import re
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from ecrkit import files, images
from ecrkit.constants import HELPER_BINARY
from ecrkit.errors import EcrkitError, FileFormatError, InputError
from ecrkit.registry import INDEX_TYPES, OCI_INDEX, Manifest, RateLimited, Registry, RegistryError, stream_blob
from ecrkit.settings import private_registry, validate_location, validate_shard

log = logging.getLogger(__name__)  # `ecrkit --debug` shows what it calls

if TYPE_CHECKING:
    import jsonschema

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["target", "images"],
    "properties": {
        "target": {"type": "string"},
        "prefix": {"type": "string"},
        "plain_http": {"type": "array", "items": {"type": "string"}},
        "referrers": {"type": "boolean"},
        "rate_limit_floor": {"type": "integer", "minimum": 0},
        "images": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["source", "tags"],
                "properties": {
                    "source": {"type": "string"},
                    "tags": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                    "repository": {"type": "string"},
                    "referrers": {"type": "boolean"},
                },
            },
        },
    },
}
JSON_TYPES: dict[str, type] = {"object": dict, "array": list, "string": str, "boolean": bool}  # the types SCHEMA names
PATTERN_CHARACTERS = "*?["
STATUSES = ("copied", "unchanged", "would copy", "stopped", "failed", "created", "would create")
REFERRER_TAG = re.compile(r"(sha256-[0-9a-f]{64})(?:\.(?:sig|att|sbom))?", re.ASCII)  # the tag schema's names
DEFAULT_FLOOR = 10  # pulls of a source's rate limit left to the others behind the same address
CI_SHARD = ("CI_NODE_INDEX", "CI_NODE_TOTAL")  # GitLab CI's `parallel: N` sets them in each job


@dataclass(frozen=True)
class Copy:
    source_host: str
    source_repository: str
    tag: str
    target_repository: str
    referrers: bool = True  # copy what is attached to the tag's manifest too

    @property
    def source(self) -> str:
        return f"{self.source_host}/{self.source_repository}:{self.tag}"


@dataclass(frozen=True)
class Result:
    status: str  # copied, unchanged, would copy, failed
    what: str
    detail: str = ""


@dataclass(frozen=True)
class Plan:
    target: str
    plain_http: frozenset[str]
    copies: tuple[Copy, ...]
    unmatched: tuple[str, ...]  # tag patterns that matched nothing, as "source:pattern"
    shard: tuple[int, int] = (1, 1)  # this run's share: (index, total), from 1


def load(path: str, source: str = "--config") -> dict[str, Any]:
    """The config file, parsed and checked against SCHEMA and ecrkit's own rules. Errors name the
    file and the place in it, never a value from it."""
    text = files.read_text(path, source)
    try:
        config = yaml.safe_load(text or "")
    except yaml.YAMLError as exc:
        raise FileFormatError(path, f"not YAML ({str(exc).splitlines()[0]})") from None
    except (ValueError, RecursionError):  # an impossible date such as 2024-13-01, or nesting too deep
        raise FileFormatError(path, "not YAML that can be loaded (an impossible date or too deep nesting)") from None
    return check(config, path)


def check(config: Any, path: str) -> dict[str, Any]:
    """The config (from a file, or a role variable: `path` names it), checked against SCHEMA and
    ecrkit's own rules."""
    if not conforms(config, SCHEMA):
        _refuse_by_schema(config, path)
    private_registry(config["target"], f"{path}: target")
    for index, host in enumerate(config.get("plain_http", [])):
        validate_location(host, f"{path}: plain_http[{index}]")
    for index, image in enumerate(config["images"]):
        _, _, suffix = images.split(image["source"], f"{path}: images[{index}].source")
        if suffix:
            raise InputError(
                f"{path}: images[{index}].source", image["source"], "a repository without tag or digest: use tags"
            )
        repository = _target_repository(config.get("prefix", ""), image, index)
        if not images.PATH.match(repository):
            raise InputError(f"{path}: images[{index}].repository", repository, "a repository name such as tools/app")
    return dict(config)


def conforms(instance: Any, schema: dict[str, Any]) -> bool:
    """True when the instance meets the schema, judged by the keywords SCHEMA uses; False when it may
    not (a keyword or type this does not know included), and then jsonschema decides and words the
    error. A config that conforms never needs jsonschema loaded, a tenth of a mirror run that finds
    nothing to copy. tests/test_mirror.py holds that True is said only where jsonschema agrees."""
    for keyword, wanted in schema.items():
        if keyword == "type":
            ok = wanted in JSON_TYPES and isinstance(instance, JSON_TYPES[wanted])
        elif keyword == "required":
            ok = isinstance(instance, dict) and all(name in instance for name in wanted)
        elif keyword == "properties":
            ok = isinstance(instance, dict) and all(
                conforms(value, wanted[name]) for name, value in instance.items() if name in wanted
            )
        elif keyword == "additionalProperties":
            ok = wanted is False and isinstance(instance, dict) and set(instance) <= set(schema.get("properties", {}))
        elif keyword == "items":
            ok = isinstance(instance, list) and all(conforms(item, wanted) for item in instance)
        elif keyword == "minItems":
            ok = isinstance(instance, list) and len(instance) >= wanted
        elif keyword == "minLength":
            ok = isinstance(instance, str) and len(instance) >= wanted
        else:
            ok = False
        if not ok:
            return False
    return True


def _refuse_by_schema(config: Any, path: str) -> None:
    """jsonschema's verdict on a config that may not conform, and its best error in words."""
    import jsonschema  # noqa: PLC0415 - a tenth of a mirror run's time, and only a config in doubt needs it

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SCHEMA).iter_errors(config))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(top level)"
        raise FileFormatError(path, f"{where}: {_schema_problem(error)}")


def _schema_problem(error: jsonschema.ValidationError) -> str:
    """What the schema wanted, in words that do not repeat the value found (it may be anything)."""
    wanted = {
        "type": f"must be of type {error.validator_value}",
        "minItems": f"must have at least {error.validator_value} item(s)",
        "minLength": "must not be empty",
    }
    return wanted.get(str(error.validator), error.message if error.validator in ("required", "additionalProperties")
                      else f"does not match the mirror config's schema ({error.validator})")  # fmt: skip


def shard_of(target_repository: str, total: int) -> int:
    """The shard (1..total) that copies a target repository: a stable hash of its name, so that every
    tag of a repository lands in one shard (its shared blobs are copied once) and adding a repository
    to the config moves no other."""
    return int.from_bytes(hashlib.sha256(target_repository.encode()).digest()[:8], "big") % total + 1


def shard_from(option: str | None, environ: Mapping[str, str]) -> tuple[int, int]:
    """--shard I/N if given, else GitLab CI's CI_NODE_INDEX/CI_NODE_TOTAL when both are set, else 1/1."""
    if option is not None:
        return validate_shard(option, "--shard")
    index, total = (environ.get(name, "") for name in CI_SHARD)
    if index and total:
        return validate_shard(f"{index}/{total}", "CI_NODE_INDEX/CI_NODE_TOTAL")
    return (1, 1)


def plan(config: dict[str, Any], tags_of: Callable[[str, str], list[str]], shard: tuple[int, int] = (1, 1)) -> Plan:
    """Every (image, tag) of this shard to copy; patterns are expanded with `tags_of(host, repository)`,
    asked only for the repositories of this shard."""
    copies: list[Copy] = []
    unmatched: list[str] = []
    for index, image in enumerate(config["images"]):
        host, repository, _ = images.split(image["source"])
        target_repository = _target_repository(config.get("prefix", ""), image, index)
        if shard[1] > 1 and shard_of(target_repository, shard[1]) != shard[0]:
            continue
        listed: list[str] | None = None
        for wanted in image["tags"]:
            if any(character in wanted for character in PATTERN_CHARACTERS):
                listed = tags_of(host, repository) if listed is None else listed
                matched = sorted(tag for tag in listed if fnmatch.fnmatchcase(tag, wanted))
                unmatched += [] if matched else [f"{host}/{repository}:{wanted}"]
            else:
                matched = [wanted]
            referrers = bool(image.get("referrers", config.get("referrers", True)))
            copies += [Copy(host, repository, tag, target_repository, referrers) for tag in matched]
    unique = tuple(dict.fromkeys(copies))
    return Plan(config["target"], frozenset(config.get("plain_http", [])), unique, tuple(unmatched), shard)


def helper_credentials(host: str) -> tuple[str, str]:
    """Username and secret for the registry from docker-credential-ecr-login, as docker gets them."""
    log.debug("%s get <<< %s", HELPER_BINARY, host)  # --debug: the call, never its answer
    try:
        done = subprocess.run(
            [HELPER_BINARY, "get"], input=host, capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError:
        raise EcrkitError(f"{HELPER_BINARY} is not on PATH: install it (ecr_credential_helper)") from None
    if done.returncode != 0:
        raise EcrkitError(
            f"{HELPER_BINARY} get {host} failed: {done.stdout.strip() or done.stderr.strip()} "
            "(its log, ~/.ecr/log/ecr-login.log, says why; `ecrkit validate` judges it)"
        )
    answer = json.loads(done.stdout)
    return str(answer["Username"]), str(answer["Secret"])


@dataclass
class BlobCounts:
    copied: int = 0  # uploaded from the source
    mounted: int = 0  # mounted from another target repository of this run
    present: int = 0  # already in the target repository
    copied_bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"copied": self.copied, "mounted": self.mounted, "present": self.present,
                "copied_bytes": self.copied_bytes}  # fmt: skip


class Blobs:
    """Each blob once per target repository, however many jobs need it at once: the first job to
    need it copies it and the others wait for that copy. A blob that another target repository of
    this run holds is mounted from there (a cross-repository mount) where the registry offers it;
    one being uploaded to another repository is waited for, then mounted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.claims: dict[tuple[str, str], Future[None]] = {}
        self.uploads: dict[str, Future[None]] = {}
        self.held: dict[str, str] = {}  # digest -> a target repository that has it
        self.counts = BlobCounts()

    def ensure(
        self, source: Registry, source_repository: str, target: Registry, target_repository: str, blob: dict[str, Any]
    ) -> None:
        key = (target_repository, str(blob["digest"]))
        with self.lock:
            claim = self.claims.get(key)
            if claim is None:
                claim = self.claims[key] = Future()
                owner = True
            else:
                owner = False
        if not owner:
            claim.result()  # the owner's failure is this job's too
            return
        try:
            self._copy(source, source_repository, target, target_repository, blob)
        except BaseException as exc:
            claim.set_exception(exc)
            raise
        claim.set_result(None)

    def _copy(
        self, source: Registry, source_repository: str, target: Registry, target_repository: str, blob: dict[str, Any]
    ) -> None:
        digest, size = str(blob["digest"]), int(blob["size"])
        if target.has_blob(target_repository, digest):
            self._count(digest, target_repository, "present")
            return
        with self.lock:
            upload = self.uploads.get(digest)
            if upload is None:
                mine = self.uploads[digest] = Future()
        if upload is not None:
            with contextlib.suppress(RegistryError):
                upload.result()
        elif digest not in self.held:
            try:
                stream_blob(source, source_repository, target, target_repository, digest, size)
            except BaseException as exc:
                mine.set_exception(exc)
                raise
            self._count(digest, target_repository, "copied", size)
            mine.set_result(None)
            return
        held = self.held.get(digest)
        if held and target.start_upload(target_repository, digest, mount_from=held) is None:
            self._count(digest, target_repository, "mounted")
            return
        stream_blob(source, source_repository, target, target_repository, digest, size)
        self._count(digest, target_repository, "copied", size)

    def _count(self, digest: str, repository: str, how: str, size: int = 0) -> None:
        with self.lock:
            self.held.setdefault(digest, repository)
            setattr(self.counts, how, getattr(self.counts, how) + 1)
            self.counts.copied_bytes += size


@dataclass(frozen=True)
class Compared:
    """What comparing a tag found: a result when its manifest is not to be copied (unchanged, failed,
    stopped), else the source's manifest; the source's digest and media type either way, when known."""

    result: Result | None
    manifest: Manifest | None = None
    digest: str = ""
    media_type: str = ""


def compare(job: Copy, source: Registry, target: Registry | Future[Registry]) -> Compared:
    """HEAD the tag at the source (not a pull) and at the target; GET the source's manifest (a pull) only
    when they differ. The target may be still on its way (its helper call running) while the source answers."""
    try:
        head, problem = source.head_manifest(job.source_repository, job.tag), None
    except RegistryError as exc:
        head, problem = None, exc
    target = target.result() if isinstance(target, Future) else target
    what = f"{job.source} -> {target.host}/{job.target_repository}:{job.tag}"
    if problem is not None or head is None:
        status = "stopped" if isinstance(problem, RateLimited) else "failed"
        return Compared(Result(status, what, str(problem or "no such tag at the source")))
    digest, media_type = head
    try:
        if target.manifest_digest(job.target_repository, job.tag) == digest:
            return Compared(Result("unchanged", what, digest), None, digest, media_type)
        manifest = source.manifest(job.source_repository, job.tag)
    except RegistryError as exc:
        return Compared(Result("stopped" if isinstance(exc, RateLimited) else "failed", what, str(exc)))
    if manifest is None:
        return Compared(Result("failed", what, "no such tag at the source"))
    return Compared(None, manifest, manifest.digest, manifest.media_type)


def put_tree(  # noqa: PLR0917 - from where to where, and what
    source: Registry,
    source_repository: str,
    target: Registry,
    target_repository: str,
    manifest: Manifest,
    reference: str,
    blobs: Blobs,
    skip_present: bool = False,
) -> int:
    """Copy a manifest under `reference`: its blobs, or for an index each manifest it lists (by digest,
    before the index; with skip_present, not those the target has), then the manifest itself, byte for
    byte. The number of manifests the index lists."""
    if manifest.is_index:
        for digest in manifest.children():
            if skip_present and target.head_manifest(target_repository, digest) is not None:
                continue
            child = source.manifest(source_repository, digest)
            if child is None:
                raise RegistryError("the index lists a manifest the source does not have")
            put_tree(source, source_repository, target, target_repository, child, digest, blobs, skip_present)
        target.put_manifest(target_repository, reference, manifest)
        return len(manifest.children())
    for blob in manifest.blobs():
        blobs.ensure(source, source_repository, target, target_repository, blob)
    target.put_manifest(target_repository, reference, manifest)
    return 0


def transfer(job: Copy, manifest: Manifest, source: Registry, target: Registry, blobs: Blobs) -> Result:
    what = f"{job.source} -> {target.host}/{job.target_repository}:{job.tag}"
    try:
        children = put_tree(source, job.source_repository, target, job.target_repository, manifest, job.tag, blobs)
        return Result("copied", what, _describe(manifest, children))
    except RateLimited as exc:
        return Result("stopped", what, str(exc))
    except RegistryError as exc:
        return Result("failed", what, str(exc))


def copy_referrers(job: Copy, found: Compared, source: Registry, target: Registry, blobs: Blobs) -> list[Result]:
    """Copy what is attached to the tag's manifest (and, by the tag schema, to the manifests its index
    lists): a result for each referrer copied, none for those the target has; a failure stops this tag's."""
    what = f"{job.source} (referrers) -> {target.host}/{job.target_repository}"
    results: list[Result] = []
    try:
        tagged = [tag for tag in source.tag_list(job.source_repository) if REFERRER_TAG.fullmatch(tag)]
        subjects = {_tag_of(found.digest)}
        if any(REFERRER_TAG.fullmatch(tag).group(1) not in subjects for tag in tagged):  # type: ignore[union-attr]
            subjects |= {_tag_of(digest) for digest in _children(job, found, target)}
        for tag in tagged:
            if REFERRER_TAG.fullmatch(tag).group(1) in subjects:  # type: ignore[union-attr]
                results += _copy_referrer_tag(job, tag, found.digest, source, target, blobs)
        listed = source.referrers(job.source_repository, found.digest)
        if listed:
            results += _copy_listed(job, found.digest, listed, source, target, blobs)
    except RegistryError as exc:
        results.append(Result("stopped" if isinstance(exc, RateLimited) else "failed", what, str(exc)))
    return results


def _children(job: Copy, found: Compared, target: Registry) -> list[str]:
    """The digests an index lists: from its manifest when it was read, else from the target's copy (the
    same bytes; reading it costs the source nothing)."""
    if found.manifest is not None:
        return found.manifest.children() if found.manifest.is_index else []
    if found.media_type not in INDEX_TYPES:
        return []
    copy = target.manifest(job.target_repository, found.digest)
    return copy.children() if copy is not None and copy.is_index else []


def _copy_referrer_tag(  # noqa: PLR0917
    job: Copy, tag: str, subject: str, source: Registry, target: Registry, blobs: Blobs
) -> list[Result]:
    """A tag of the tag schema (a referrers index, or cosign's .sig/.att/.sbom), copied unless the target
    holds the same digest under it."""
    head = source.head_manifest(job.source_repository, tag)
    if head is None or target.manifest_digest(job.target_repository, tag) == head[0]:
        return []
    manifest = source.manifest(job.source_repository, tag)
    if manifest is None:
        return []
    put_tree(source, job.source_repository, target, job.target_repository, manifest, tag, blobs, skip_present=True)
    what = f"{source.host}/{job.source_repository}:{tag} -> {target.host}/{job.target_repository}:{tag}"
    return [Result("copied", what, f"{manifest.digest} (referrers of {subject})")]


def _copy_listed(  # noqa: PLR0917
    job: Copy, subject: str, listed: list[dict[str, Any]], source: Registry, target: Registry, blobs: Blobs
) -> list[Result]:
    """The referrers the source's API lists, copied by digest unless the target lists them; where the
    target does not serve the API, its referrers index (the `sha256-<hex>` tag) gets the new descriptors."""
    on_target = target.referrers(job.target_repository, subject)
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if on_target is None:
        held = target.manifest(job.target_repository, _tag_of(subject))
        index = json.loads(held.body) if held is not None and held.is_index else index
        on_target = index.get("manifests") or []
    present = {entry.get("digest") for entry in on_target}
    missing = [entry for entry in listed if entry.get("digest") not in present]
    results = []
    for entry in missing:
        digest = str(entry["digest"])
        manifest = source.manifest(job.source_repository, digest)
        if manifest is None:
            raise RegistryError(f"{source.host}/{job.source_repository}: the referrer {digest} is listed, not served")
        put_tree(source, job.source_repository, target, job.target_repository, manifest, digest, blobs, True)
        kind = entry.get("artifactType") or entry.get("mediaType", "")
        what = f"{source.host}/{job.source_repository}@{digest} -> {target.host}/{job.target_repository}@{digest}"
        results.append(Result("copied", what, f"referrer of {subject} ({kind})"))
    if missing and target.serves_referrers is False:
        index["manifests"] = [*index.get("manifests", []), *missing]
        body = json.dumps(index, separators=(",", ":")).encode()
        target.put_manifest(job.target_repository, _tag_of(subject), Manifest(body, OCI_INDEX))
    return results


def _tag_of(digest: str) -> str:
    """The tag schema's name for a digest: sha256:<hex> -> sha256-<hex>."""
    return digest.replace(":", "-", 1)


@dataclass
class Outcome:
    results: list[Result]
    blobs: BlobCounts = field(default_factory=BlobCounts)
    shard: tuple[int, int] = (1, 1)
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)  # per source host: its rate limit as last read
    stops: list[str] = field(default_factory=list)  # one line per source that copying stopped from

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(result.status for result in self.results)
        return {status: counted[status] for status in STATUSES}

    @property
    def failed(self) -> bool:
        return self.counts["failed"] > 0 or self.counts["stopped"] > 0

    def summary(self) -> str:
        """`N copied, N unchanged, N failed`: the line a log shows last."""
        counts = self.counts
        return ", ".join(f"{counts[status]} {status}" for status in ("copied", "unchanged", "would copy", "stopped",
                         "failed") if counts[status] or status in ("copied", "failed"))  # fmt: skip

    def as_json(self, bytes_read: int) -> str:
        """The machine-readable summary (`--json`): counts, each result, blobs, rate limits and the shard."""
        return json.dumps(
            {
                "shard": f"{self.shard[0]}/{self.shard[1]}",
                "counts": self.counts,
                "exit_code": 1 if self.failed else 0,
                "blobs": {**self.blobs.as_dict(), "source_bytes_read": bytes_read},
                "rate_limits": self.limits,
                "stops": self.stops,
                "results": [{"status": r.status, "what": r.what, "detail": r.detail} for r in self.results],
            },
            indent=2,
        )


def run(
    plan_: Plan,
    *,
    dry_run: bool,
    jobs: int,
    registry: Callable[[str], Registry],
    ensure_repositories: Callable[[Iterable[str], bool], list[str]],
    advance: Callable[[Result], None] = lambda result: None,
) -> Outcome:
    """Compare every tag (concurrently); create the missing repositories of the tags to copy (unless
    dry_run: only when a copy is due does the AWS API get asked); then copy concurrently, each blob
    once per target repository, and each tag's referrers (unchanged tags' too). Results in plan order."""
    results = [Result("failed", pattern, "no tag matches this pattern") for pattern in plan_.unmatched]
    sources = {host: registry(host) for host in dict.fromkeys(job.source_host for job in plan_.copies)}
    blobs = Blobs()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        # The target's client (its helper call, a GetAuthorizationToken) is made while the sources answer.
        target_ready = pool.submit(registry, plan_.target)
        compared = list(pool.map(lambda job: compare(job, sources[job.source_host], target_ready), plan_.copies))
        target = target_ready.result()
        due = [(job, found) for job, found in zip(plan_.copies, compared, strict=True)
               if found.manifest is not None or (found.result is not None and found.result.status == "unchanged"
                                                 and job.referrers and not dry_run)]  # fmt: skip
        for found in compared:
            if found.result is not None:
                advance(found.result)
        repositories = sorted({job.target_repository for job, found in due if found.manifest is not None})
        status = "would create" if dry_run else "created"
        created = ensure_repositories(repositories, dry_run) if repositories else []
        results += [Result(status, f"{plan_.target}/{name}", "repository") for name in created]

        def one(item: tuple[Copy, Compared]) -> list[Result]:
            job, found = item
            source = sources[job.source_host]
            if found.manifest is None:  # unchanged: only its referrers may be new
                return copy_referrers(job, found, source, target, blobs)
            if dry_run:
                result = Result("would copy", f"{job.source} -> {target.host}/{job.target_repository}:{job.tag}",
                                found.manifest.digest)  # fmt: skip
            else:
                result = transfer(job, found.manifest, source, target, blobs)
            advance(result)
            if result.status == "copied" and job.referrers:
                return [result, *copy_referrers(job, found, source, target, blobs)]
            return [result]

        done = dict(zip((id(found) for _, found in due), pool.map(one, due), strict=True))
    for found in compared:
        results += ([found.result] if found.result is not None else []) + done.get(id(found), [])
    limits, stops = {}, []
    for host, source in sources.items():
        if source.limit is not None:
            limits[host] = {**source.limit.as_dict(), "floor": source.floor, "stopped": source.stopped is not None}
        if source.stopped is not None:
            left = sum(1 for result in results if result.status == "stopped" and result.what.startswith(f"{host}/"))
            stops.append(f"{source.stopped} ({left} not copied)")
    return Outcome(results, blobs.counts, plan_.shard, limits, stops)


def ensure_repositories(ecr: Any, account: str, names: Iterable[str], dry_run: bool) -> list[str]:
    """Create the repositories that do not exist (in a dry run, only name them)."""
    missing = []
    for name in names:
        try:
            ecr.describe_repositories(registryId=account, repositoryNames=[name])
        except ecr.exceptions.RepositoryNotFoundException:
            if not dry_run:
                ecr.create_repository(repositoryName=name)
            missing.append(name)
    return missing


def _target_repository(prefix: str, image: dict[str, Any], index: int) -> str:
    if image.get("repository"):
        return str(image["repository"])
    _, path, _ = images.split(image["source"], f"images[{index}].source")
    return f"{prefix.strip('/')}/{path}" if prefix.strip("/") else path


def _describe(manifest: Manifest, children: int) -> str:
    return f"{manifest.digest} ({children} platforms)" if children else manifest.digest
