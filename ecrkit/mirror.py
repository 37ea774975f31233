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
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import jsonschema
import yaml

from ecrkit import files, images
from ecrkit.errors import EcrkitError, FileFormatError, InputError
from ecrkit.registry import Manifest, Registry, RegistryError, copy_blob
from ecrkit.settings import HELPER_BINARY, private_registry, validate_location

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["target", "images"],
    "properties": {
        "target": {"type": "string"},
        "prefix": {"type": "string"},
        "plain_http": {"type": "array", "items": {"type": "string"}},
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
                },
            },
        },
    },
}
PATTERN_CHARACTERS = "*?["


@dataclass(frozen=True)
class Copy:
    source_host: str
    source_repository: str
    tag: str
    target_repository: str

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
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SCHEMA).iter_errors(config))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(top level)"
        raise FileFormatError(path, f"{where}: {_schema_problem(error)}")
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


def _schema_problem(error: jsonschema.ValidationError) -> str:
    """What the schema wanted, in words that do not repeat the value found (it may be anything)."""
    wanted = {
        "type": f"must be of type {error.validator_value}",
        "minItems": f"must have at least {error.validator_value} item(s)",
        "minLength": "must not be empty",
    }
    return wanted.get(str(error.validator), error.message if error.validator in ("required", "additionalProperties")
                      else f"does not match the mirror config's schema ({error.validator})")  # fmt: skip


def plan(config: dict[str, Any], tags_of: Callable[[str, str], list[str]]) -> Plan:
    """Every (image, tag) to copy; patterns are expanded with `tags_of(host, repository)`."""
    copies: list[Copy] = []
    unmatched: list[str] = []
    for index, image in enumerate(config["images"]):
        host, repository, _ = images.split(image["source"])
        target_repository = _target_repository(config.get("prefix", ""), image, index)
        listed: list[str] | None = None
        for wanted in image["tags"]:
            if any(character in wanted for character in PATTERN_CHARACTERS):
                listed = tags_of(host, repository) if listed is None else listed
                matched = sorted(tag for tag in listed if fnmatch.fnmatchcase(tag, wanted))
                unmatched += [] if matched else [f"{host}/{repository}:{wanted}"]
            else:
                matched = [wanted]
            copies += [Copy(host, repository, tag, target_repository) for tag in matched]
    unique = tuple(dict.fromkeys(copies))
    return Plan(config["target"], frozenset(config.get("plain_http", [])), unique, tuple(unmatched))


def helper_credentials(host: str) -> tuple[str, str]:
    """Username and secret for the registry from docker-credential-ecr-login, as docker gets them."""
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


def copy_one(job: Copy, source: Registry, target: Registry, dry_run: bool) -> Result:
    what = f"{job.source} -> {target.host}/{job.target_repository}:{job.tag}"
    try:
        manifest = source.manifest(job.source_repository, job.tag)
        if manifest is None:
            return Result("failed", what, "no such tag at the source")
        if target.manifest_digest(job.target_repository, job.tag) == manifest.digest:
            return Result("unchanged", what, manifest.digest)
        if dry_run:
            return Result("would copy", what, manifest.digest)
        listed = (
            [source.manifest(job.source_repository, digest) for digest in manifest.children()]
            if manifest.is_index
            else []
        )
        children = [child for child in listed if child is not None]
        if len(children) != len(listed):
            return Result("failed", what, "the index lists a manifest the source does not have")
        for image in children or [manifest]:
            for blob in image.blobs():
                copy_blob(source, job.source_repository, target, job.target_repository, blob["digest"])
            if image is not manifest:
                target.put_manifest(job.target_repository, image.digest, image)
        target.put_manifest(job.target_repository, job.tag, manifest)
        return Result("copied", what, _describe(manifest, len(children)))
    except RegistryError as exc:
        return Result("failed", what, str(exc))


def run(
    plan_: Plan,
    *,
    dry_run: bool,
    jobs: int,
    registry: Callable[[str], Registry],
    ensure_repositories: Callable[[Iterable[str], bool], list[str]],
    advance: Callable[[Result], None] = lambda result: None,
) -> list[Result]:
    """Create missing repositories (unless dry_run), then copy concurrently; results in plan order."""
    results = [Result("failed", pattern, "no tag matches this pattern") for pattern in plan_.unmatched]
    repositories = sorted({job.target_repository for job in plan_.copies})
    status = "would create" if dry_run else "created"
    results += [
        Result(status, f"{plan_.target}/{name}", "repository") for name in ensure_repositories(repositories, dry_run)
    ]

    def one(job: Copy) -> Result:
        result = copy_one(job, registry(job.source_host), registry(plan_.target), dry_run)
        advance(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results += list(pool.map(one, plan_.copies))
    return results


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
