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
      - source: ghcr.io/org/app         # tag rules, applied in the order PRECEDENCE states
        include: ['^v\\d']
        exclude: ['-rc']
        semver: ">=1.4, <3"
        latest: 3                       # latest_by: semver (the default) or created
        platforms: [linux/amd64, linux/arm64]  # an index's platforms to keep (default: all, the source's digest)
    referrers: true                     # optional (default): copy signatures, SBOMs, attestations too
    rate_limit_floor: 10                # optional: pulls left to others of a source's rate limit

Referrers (what names a copied manifest as its subject) are found by the OCI 1.1 referrers API where
the source serves it and by the tag schema (`sha256-<hex>`, `.sig`, `.att`, `.sbom` tags) always; they
are copied with their digests, and where the target does not serve the API either, the referrers
index under its `sha256-<hex>` tag is kept up to date, as OCI clients do. Source credentials come from
the user's docker config (ecrkit.registry.docker_credentials); a source's rate limit stops copies from
it at the floor, and the run goes on with the others.

`--dry-run` also says why each rule chose its tags, and which images a pull-through cache rule of the
target account serves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import hashlib
import itertools
import json
import logging
import operator
import os
import re
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import yaml

from ecrkit import files, images
from ecrkit.constants import HELPER_BINARY
from ecrkit.errors import EcrkitError, FileFormatError, InputError, PathError
from ecrkit.registry import INDEX_TYPES, OCI_INDEX, Manifest, RateLimited, Registry, RegistryError, stream_blob
from ecrkit.settings import private_registry, validate_location, validate_shard

log = logging.getLogger(__name__)  # `ecrkit --debug` shows what it calls

if TYPE_CHECKING:
    import jsonschema
    import semver

PLATFORM = r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?\Z"  # os/architecture[/variant], as docker --platform takes it
PLATFORMS: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "pattern": PLATFORM},
}
REGEXES: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}
# The order in which an image's tag rules apply (docs/mirroring.md says the same; tests/test_mirror_rules.py
# checks it).
PRECEDENCE = (
    "1. `tags`: an exact tag is copied as named, never listed and never dropped by another rule; "
    "a shell pattern selects the source's tags it matches. "
    "2. `include`: each regular expression selects the source's tags it matches (re.search). "
    "Without a pattern or an include, every tag of the source is a candidate. "
    "3. `exclude`: drops the candidates any of its regular expressions match. "
    "4. `semver`: keeps the candidates within the range; a tag that is not a version is dropped. "
    "5. `latest`: keeps the N newest candidates left, by `latest_by` (semver, the default, or created)."
)
TAG_RULES = ("tags", "include", "semver", "latest")  # an image needs one: `exclude` alone would copy everything
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
        "platforms": PLATFORMS,
        "images": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "description": PRECEDENCE,
                "additionalProperties": False,
                "required": ["source"],
                "anyOf": [{"required": [rule]} for rule in TAG_RULES],
                "dependentRequired": {"latest_by": ["latest"]},
                "properties": {
                    "source": {"type": "string"},
                    "tags": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                    "include": REGEXES,
                    "exclude": REGEXES,
                    "semver": {"type": "string", "minLength": 1},
                    "latest": {"type": "integer", "minimum": 1},
                    "latest_by": {"type": "string", "enum": ["semver", "created"]},
                    "platforms": PLATFORMS,
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
    platforms: tuple[str, ...] = ()  # the index's platforms to keep (os/architecture[/variant]); () keeps all

    @property
    def source(self) -> str:
        return f"{self.source_host}/{self.source_repository}:{self.tag}"


@dataclass(frozen=True)
class Result:
    status: str  # copied, unchanged, would copy, failed
    what: str
    detail: str = ""
    filtered: bool = False  # an index whose platforms were filtered: its digest is not the source's


@dataclass(frozen=True)
class Step:
    """What one tag rule of an image did: the tags it selected or kept, and those it dropped, each with why."""

    rule: str
    selected: tuple[tuple[str, str], ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Selection:
    """An image's tag rules, in the order they applied (PRECEDENCE), and the tags to copy."""

    image: str  # host/repository
    target_repository: str
    steps: tuple[Step, ...]
    tags: tuple[str, ...]

    def lines(self) -> list[str]:
        """What a dry run says of the image: one line per rule, the tags it selected or dropped and why
        (tags that share a reason listed together), and the tags to copy."""
        found = []
        for step in self.steps:
            parts = [f"{verb} {_grouped(pairs)}" for verb, pairs in (("selected", step.selected),
                                                                     ("dropped", step.dropped)) if pairs]  # fmt: skip
            found.append(f"{self.image}  {step.rule}: {'; '.join(parts) or 'nothing'}")
        found.append(f"{self.image}  to copy: {', '.join(self.tags) or 'nothing'}")
        return found


SHOWN = 10  # the tags a dry run names for one reason of one rule; the others are counted


def _grouped(pairs: tuple[tuple[str, str], ...]) -> str:
    """`a, b (why), c (why else)`: tags in order, each run of one reason said once (a long run cut short:
    a source may hold thousands of tags)."""
    said = []
    for why, run in itertools.groupby(pairs, key=lambda pair: pair[1]):
        names = [tag for tag, _ in run]
        more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN + 1 else ""
        said.append(f"{', '.join(names[: SHOWN if more else None])}{more} ({why})")
    return ", ".join(said)


@dataclass(frozen=True)
class Cached:
    """A listed image that a pull-through cache rule of the target's account serves."""

    image: str  # host/repository
    rule: str  # the rule's ecrRepositoryPrefix
    upstream: str  # its upstreamRegistryUrl
    pull: str  # the reference to pull through the cache, without tag

    def line(self) -> str:
        return (f"{self.image}  a pull-through cache serves it: pull {self.pull}:TAG (rule {self.rule}, upstream "
                f"{self.upstream}); copy it only to keep tags the upstream may delete")  # fmt: skip


@dataclass(frozen=True)
class Plan:
    target: str
    plain_http: frozenset[str]
    copies: tuple[Copy, ...]
    unmatched: tuple[str, ...]  # tag patterns that matched nothing, as "source:pattern"
    shard: tuple[int, int] = (1, 1)  # this run's share: (index, total), from 1
    selections: tuple[Selection, ...] = ()  # per image of this shard: which rule selected what, and why


SSM_SCHEME = "ssm:"
# A Parameter Store name: hierarchical (/a/b, up to 15 levels) or plain; letters, digits and _.- (AWS's rule).
SSM_NAME = re.compile(r"\A/?[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+){0,14}\Z", re.ASCII)
SSM_ACCEPTED = "ssm:/NAME (a Parameter Store parameter: letters, digits, _ . - and / between levels)"


def load(path: str, source: str = "--config") -> dict[str, Any]:
    """The config, from a file or (`ssm:/name`) from an SSM Parameter Store parameter, parsed and
    checked against SCHEMA and ecrkit's own rules. Errors name the file or parameter, the option and
    the place in it, never a value from it."""
    text: str | None
    if path.startswith(SSM_SCHEME):
        text = ssm_parameter(path.removeprefix(SSM_SCHEME), source)
        refuse: Callable[[str], EcrkitError] = lambda problem: PathError(source, path, problem)  # noqa: E731
    else:
        text = files.read_text(path, source)
        refuse = lambda problem: FileFormatError(path, problem)  # noqa: E731
    try:
        config = yaml.safe_load(text or "")
    except yaml.YAMLError as exc:
        raise refuse(f"not YAML ({str(exc).splitlines()[0]})") from None
    except (ValueError, RecursionError):  # an impossible date such as 2024-13-01, or nesting too deep
        raise refuse("not YAML that can be loaded (an impossible date or too deep nesting)") from None
    return check(config, path)


def ssm_parameter(name: str, source: str = "--config", client: Any = None) -> str:
    """The value of an SSM Parameter Store parameter (String, or SecureString decrypted), asked with the
    usual AWS credentials and region (AWS_REGION; CodeBuild and EC2 set it). botocore is loaded here
    only: a config file never needs it. Errors name the parameter and the option, never the value."""
    where = f"{source} {SSM_SCHEME}{name}"
    if not SSM_NAME.fullmatch(name) or len(name) > 2048:
        raise InputError(source, f"{SSM_SCHEME}{name}", SSM_ACCEPTED)
    import botocore.config  # noqa: PLC0415 - only a config in Parameter Store needs the AWS SDK
    import botocore.exceptions  # noqa: PLC0415
    import botocore.session  # noqa: PLC0415

    errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
    try:
        if client is None:
            session = botocore.session.get_session()
            region = os.environ.get("AWS_REGION") or session.get_config_variable("region")  # SDKs' order
            if not region:
                raise EcrkitError(f"{where}: no AWS region to ask: set AWS_REGION (or a profile's region)")
            bounded = botocore.config.Config(connect_timeout=10, read_timeout=30,
                                             retries={"mode": "standard", "max_attempts": 5})  # fmt: skip
            client = session.create_client("ssm", region_name=region, config=bounded)
        answer = client.get_parameter(Name=name, WithDecryption=True)
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ParameterNotFound":
            raise PathError(source, f"{SSM_SCHEME}{name}",
                            f"no such parameter in {client.meta.region_name} (ssm:GetParameter)") from None  # fmt: skip
        raise EcrkitError(f"{where}: ssm:GetParameter failed ({exc})") from None
    except errors as exc:
        raise EcrkitError(f"{where}: ssm:GetParameter failed ({exc})") from None
    parameter = answer["Parameter"]
    if parameter.get("Type") == "StringList":
        raise PathError(source, f"{SSM_SCHEME}{name}",
                        "a StringList parameter; the mirror config is a String or SecureString of YAML")  # fmt: skip
    return str(parameter["Value"])


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
        for key in ("include", "exclude"):
            for number, expression in enumerate(image.get(key, [])):
                try:
                    re.compile(expression, re.ASCII)  # tags are ASCII: \d means 0-9 there
                except re.error as exc:
                    raise InputError(
                        f"{path}: images[{index}].{key}[{number}]", expression, f"a Python regular expression ({exc})"
                    ) from None
        if "semver" in image:
            semver_range(image["semver"], f"{path}: images[{index}].semver")
    return dict(config)


def conforms(instance: Any, schema: dict[str, Any]) -> bool:
    """True when the instance meets the schema, judged by the keywords SCHEMA uses; False when it may
    not (a keyword or type this does not know included), and then jsonschema decides and words the
    error. A config that conforms never needs jsonschema loaded, a tenth of a mirror run that finds
    nothing to copy. tests/test_mirror.py holds that True is said only where jsonschema agrees."""
    for keyword, wanted in schema.items():
        judge = KEYWORDS.get(keyword)
        if judge is None or not judge(instance, wanted, schema):
            return False
    return True


Judge = Callable[[Any, Any, dict[str, Any]], bool]  # (instance, the keyword's value, the schema) -> conforms
KEYWORDS: dict[str, Judge] = {
    "type": lambda instance, wanted, _: (
        _is_integer(instance)
        if wanted == "integer"
        else wanted in JSON_TYPES and isinstance(instance, JSON_TYPES[wanted])
    ),
    "required": lambda instance, wanted, _: isinstance(instance, dict) and all(name in instance for name in wanted),
    "properties": lambda instance, wanted, _: (
        isinstance(instance, dict)
        and all(conforms(value, wanted[name]) for name, value in instance.items() if name in wanted)
    ),
    "additionalProperties": lambda instance, wanted, schema: (
        wanted is False and isinstance(instance, dict) and set(instance) <= set(schema.get("properties", {}))
    ),
    "items": lambda instance, wanted, _: (
        isinstance(instance, list) and all(conforms(item, wanted) for item in instance)
    ),
    "minItems": lambda instance, wanted, _: isinstance(instance, list) and len(instance) >= wanted,
    "minLength": lambda instance, wanted, _: isinstance(instance, str) and len(instance) >= wanted,
    "minimum": lambda instance, wanted, _: _is_integer(instance) and instance >= wanted,
    "pattern": lambda instance, wanted, _: isinstance(instance, str) and re.search(wanted, instance) is not None,
    "enum": lambda instance, wanted, _: (
        isinstance(instance, str) and all(isinstance(item, str) for item in wanted) and instance in wanted
    ),
    "anyOf": lambda instance, wanted, _: any(conforms(instance, option) for option in wanted),
    "dependentRequired": lambda instance, wanted, _: (
        isinstance(instance, dict)
        and all(name in instance for key, names in wanted.items() if key in instance for name in names)
    ),
    "description": lambda instance, wanted, _: True,
}


def _is_integer(instance: Any) -> bool:
    """JSON Schema's integer, as jsonschema judges it: not a boolean; a float with no fraction is one."""
    if isinstance(instance, bool):
        return False
    return isinstance(instance, int) or (isinstance(instance, float) and instance.is_integer())


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
        "minimum": f"must be at least {error.validator_value}",
        "enum": f"must be one of {error.validator_value}",
        "pattern": "must be os/architecture[/variant], such as linux/arm64",
        "anyOf": f"needs a tag rule: one of {', '.join(TAG_RULES)}",
    }
    words = ("required", "additionalProperties", "dependentRequired")
    return wanted.get(str(error.validator), error.message if error.validator in words
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


CreatedOf = Callable[[str, str, tuple[str, ...], list[str]], dict[str, str]]  # (host, repository, platforms, tags)


def _no_created(host: str, repository: str, platforms: tuple[str, ...], tags: list[str]) -> dict[str, str]:
    raise EcrkitError(f"{host}/{repository}: latest_by created needs the images' creation times, and none were given")


def plan(
    config: dict[str, Any],
    tags_of: Callable[[str, str], list[str]],
    shard: tuple[int, int] = (1, 1),
    created_of: CreatedOf = _no_created,
) -> Plan:
    """Every (image, tag) of this shard to copy, chosen by each image's tag rules (PRECEDENCE). The source's
    tags are listed with `tags_of(host, repository)` only for an image whose rules need the list, and
    only for the repositories of this shard; `created_of(host, repository, platforms, tags)` gives the
    creation times of the candidates of a `latest_by: created` rule (those only)."""
    copies: list[Copy] = []
    unmatched: list[str] = []
    selections: list[Selection] = []
    for index, image in enumerate(config["images"]):
        host, repository, _ = images.split(image["source"])
        target_repository = _target_repository(config.get("prefix", ""), image, index)
        if shard[1] > 1 and shard_of(target_repository, shard[1]) != shard[0]:
            continue
        platforms = tuple(image.get("platforms", config.get("platforms", [])))
        referrers = bool(image.get("referrers", config.get("referrers", True)))
        listed = functools.partial(tags_of, host, repository)
        created = functools.partial(created_of, host, repository, platforms)
        selection, missed = select(image, host, repository, listed, created)
        selections.append(dataclasses.replace(selection, target_repository=target_repository))
        unmatched += missed
        copies += [Copy(host, repository, tag, target_repository, referrers, platforms) for tag in selection.tags]
    unique = tuple(dict.fromkeys(copies))
    return Plan(config["target"], frozenset(config.get("plain_http", [])), unique, tuple(unmatched), shard,
                tuple(selections))  # fmt: skip


def select(
    image: dict[str, Any],
    host: str,
    repository: str,
    listed: Callable[[], list[str]],
    created_of: Callable[[list[str]], dict[str, str]],
) -> tuple[Selection, list[str]]:
    """The tags an image's rules choose, applied in the order PRECEDENCE states, each step with its reasons;
    and the rules that matched nothing (as "host/repository:pattern" for a shell pattern)."""
    name = f"{host}/{repository}"
    wanted = list(dict.fromkeys(image.get("tags", [])))
    exact = [tag for tag in wanted if not any(character in tag for character in PATTERN_CHARACTERS)]
    patterns = [tag for tag in wanted if tag not in exact]
    include, exclude = image.get("include", []), image.get("exclude", [])
    steps = [Step("tags (exact)", tuple((tag, "named in the config") for tag in exact))] if exact else []
    missed: list[str] = []
    if not (patterns or include or "semver" in image or "latest" in image):
        return Selection(name, "", tuple(steps), tuple(exact)), missed
    source_tags = listed()
    order: list[str] = []  # every tag in the config's order: a name, a pattern's matches (sorted), include's
    for entry in wanted:
        if entry in exact:
            order.append(entry)
            continue
        matched = sorted(tag for tag in source_tags if fnmatch.fnmatchcase(tag, entry))
        steps.append(Step(f"tags {entry!r}", tuple((tag, "matches the shell pattern") for tag in matched)))
        missed += [] if matched else [f"{name}:{entry}"]
        order += matched
    for expression in include:
        matched = sorted(tag for tag in source_tags if re.search(expression, tag, re.ASCII))
        steps.append(Step(f"include {expression!r}", tuple((tag, "matches the regular expression") for tag in matched)))
        missed += [] if matched else [f"{name} include {expression!r}"]
        order += matched
    if not (patterns or include):
        order += sorted(source_tags)
        steps.append(Step("every tag of the source", tuple((tag, "no pattern or include") for tag in order)))
    candidates = [tag for tag in dict.fromkeys(order) if tag not in exact]
    for expression in exclude:
        dropped = [tag for tag in candidates if re.search(expression, tag, re.ASCII)]
        steps.append(Step(f"exclude {expression!r}", dropped=tuple((tag, "matches") for tag in dropped)))
        candidates = [tag for tag in candidates if tag not in dropped]
    if "semver" in image:
        candidates, step = _in_range(candidates, image["semver"])
        steps.append(step)
    if "latest" in image:
        candidates, step = _latest(candidates, int(image["latest"]), image.get("latest_by", "semver"), created_of)
        steps.append(step)
    if not candidates and not missed and not exact:
        missed.append(f"{name}: no tag is left by the rules")
    chosen = set(exact) | set(candidates)
    tags = tuple(tag for tag in dict.fromkeys(order) if tag in chosen)
    return Selection(name, "", tuple(steps), tags), missed


SEMVER_MAJOR = 3  # Version.parse(optional_minor_and_patch=True) came with semver 3
RANGE_PART = re.compile(r"^(>=|<=|>|<|==|!=)?\s*(\S+)\Z", re.ASCII)
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "!=": operator.ne
}  # fmt: skip


def version_of(tag: str) -> semver.Version | None:
    """The tag as a semantic version, by the semver library's parser with a leading `v` and a missing minor
    or patch allowed (v1.8 is 1.8.0; 1.25-alpine is the pre-release 1.25.0-alpine); None if it is not one."""
    try:
        return _semver().parse(tag.removeprefix("v"), optional_minor_and_patch=True)
    except ValueError:
        return None


@functools.cache
def _semver() -> type[semver.Version]:
    """The semver library's Version (semver 3 or later), loaded by the first semver rule: a config without
    one never needs it."""
    try:
        import semver  # noqa: PLC0415 - only a config with semver rules needs it
    except ImportError:
        found = "none"
    else:
        if int(semver.__version__.split(".")[0]) >= SEMVER_MAJOR:
            return semver.Version
        found = semver.__version__
    raise EcrkitError(
        f"semver tag rules need the Python library semver {SEMVER_MAJOR} or later (`pip install 'semver>=3'`); "
        f"found {found} (Debian 12's python3-semver is 2.10)"
    )


def semver_range(text: str, source: str) -> list[tuple[str, semver.Version]]:
    """A range: comparisons joined by commas, all of which must hold (`>=1.8, <2`)."""
    comparisons = []
    for part in text.split(","):
        match = RANGE_PART.match(part.strip())
        version = version_of(match.group(2)) if match else None
        if match is None or version is None:
            raise InputError(source, text, "comparisons joined by commas, such as '>=1.8, <2' "
                             "(operators >=, <=, >, <, ==, !=; versions such as 1, 1.8 or 1.8.0-rc.1)")  # fmt: skip
        comparisons.append((match.group(1) or "==", version))
    return comparisons


def _in_range(candidates: list[str], text: str) -> tuple[list[str], Step]:
    comparisons = semver_range(text, "semver")
    kept, dropped = [], []
    for tag in candidates:
        version = version_of(tag)
        if version is None:
            dropped.append((tag, "not a version"))
        elif all(COMPARISONS[op](version, bound) for op, bound in comparisons):
            kept.append((tag, "in the range"))
        else:
            dropped.append((tag, "outside the range"))
    return [tag for tag, _ in kept], Step(f"semver {text!r}", tuple(kept), tuple(dropped))


def _latest(
    candidates: list[str], count: int, by: str, created_of: Callable[[list[str]], dict[str, str]]
) -> tuple[list[str], Step]:
    """The `count` newest candidates, by semver order or by creation time; a tag without one is dropped."""
    ordered: list[tuple[Any, str, str]] = []  # (sort key, tag, what it was ordered by)
    dropped: list[tuple[str, str]] = []
    if by == "semver":
        for tag in candidates:
            version = version_of(tag)
            if version is None:
                dropped.append((tag, "not a version: no semver order"))
            else:
                ordered.append(((version, tag), tag, f"version {version}"))
    else:
        times = created_of(candidates) if candidates else {}
        for tag in candidates:
            when = _timestamp(times.get(tag, ""))
            if when is None:
                dropped.append((tag, "no creation time in its config"))
            else:
                ordered.append(((when, tag), tag, f"created {times[tag]}"))
    ordered.sort(key=lambda item: item[0], reverse=True)
    kept = [(tag, f"{why}, newest {rank + 1} of {len(ordered)}") for rank, (_, tag, why) in enumerate(ordered[:count])]
    dropped += [(tag, f"{why}: older than the {count} kept") for _, tag, why in ordered[count:]]
    return [tag for tag, _ in kept], Step(f"latest {count} by {by}", tuple(kept), tuple(dropped))


def _timestamp(text: str) -> datetime | None:
    """An RFC 3339 time (the image config's `created`) as a comparable time, or None."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def creation_times(
    source: Registry, repository: str, tags: list[str], platforms: tuple[str, ...], jobs: int = 4
) -> dict[str, str]:
    """Each tag's image creation time (its config's `created`; "" when it has none), asked concurrently:
    the manifest, for an index the manifest of its first platform (of `platforms`, when given), and the
    config blob: two or three GETs per tag, for the candidates of a `latest_by: created` rule only."""

    def created(tag: str) -> str:
        manifest = source.manifest(repository, tag)
        if manifest is not None and manifest.is_index:
            entries = [entry for entry in json.loads(manifest.body).get("manifests", [])
                       if _wanted(entry.get("platform") or {}, platforms)]  # fmt: skip
            manifest = source.manifest(repository, entries[0]["digest"]) if entries else None
        if manifest is None or manifest.is_index:
            return ""
        config = (json.loads(manifest.body).get("config") or {}).get("digest")
        if not config:
            return ""
        answer = source.request("GET", f"/v2/{repository}/blobs/{config}", repository)
        return str(json.loads(answer.data).get("created") or "")

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(tags)))) as pool:
        return dict(zip(tags, pool.map(created, tags), strict=True))


# -- platforms ------------------------------------------------------------------------------------


ATTACHED_TO = "vnd.docker.reference.digest"  # an attestation manifest's platform manifest, in a buildx index


class FilteredIndex(Manifest):
    """An index that lists only the wanted platforms (and what is attached to them): a new digest. The
    manifests it lists are the source's, byte for byte."""

    def __init__(self, body: bytes, media_type: str, source_digest: str, kept: int, total: int) -> None:
        super().__init__(body, media_type)
        self.source_digest, self.kept, self.total = source_digest, kept, total


def _wanted(platform: dict[str, Any], platforms: tuple[str, ...]) -> bool:
    """Whether an index entry's platform is one of `platforms` (os/architecture matches every variant;
    os/architecture/variant only that one); with none given, any real platform (not unknown/unknown)."""
    if not platforms:
        return str(platform.get("os", "unknown")) != "unknown"
    for wanted in platforms:
        os_name, architecture, *variant = wanted.split("/")
        if (platform.get("os"), platform.get("architecture")) == (os_name, architecture) and (
            not variant or platform.get("variant") == variant[0]
        ):
            return True
    return False


def filter_index(manifest: Manifest, platforms: tuple[str, ...]) -> Manifest | None:
    """The index with only the entries of `platforms`, and the entries attached to them (buildx's
    attestation manifests name theirs in `vnd.docker.reference.digest`); the source's own index when it
    lists nothing else (and so its digest); None when no entry is of those platforms."""
    if not platforms or not manifest.is_index:
        return manifest
    document = json.loads(manifest.body)
    entries = document.get("manifests", [])
    platformed = [entry for entry in entries if _wanted(entry.get("platform") or {}, ())]
    kept = [entry for entry in entries if _wanted(entry.get("platform") or {}, platforms)]
    if not kept:
        return None
    digests = {entry["digest"] for entry in kept}
    attached = [entry for entry in entries if (entry.get("annotations") or {}).get(ATTACHED_TO) in digests]
    listed = [entry for entry in entries if entry in kept or entry in attached]
    if len(listed) == len(entries):
        return manifest
    document["manifests"] = listed
    body = json.dumps(document, indent=3).encode()  # the same bytes, and digest, for the same source and filter
    return FilteredIndex(body, manifest.media_type, manifest.digest, len(kept), len(platformed))


def served_by_cache(
    config: dict[str, Any], rules: list[dict[str, Any]], shard: tuple[int, int] = (1, 1)
) -> list[Cached]:
    """The images of this shard that a pull-through cache rule (describe_pull_through_cache_rules' shape)
    serves: the rule's upstream registry is the image's source registry (Docker Hub by any of its names),
    and its upstream repository prefix, if any, begins the image's path."""
    found = []
    for index, image in enumerate(config["images"]):
        host, path, _ = images.split(image["source"])
        if shard[1] > 1 and shard_of(_target_repository(config.get("prefix", ""), image, index), shard[1]) != shard[0]:
            continue
        for rule in rules:
            upstream = str(rule.get("upstreamRegistryUrl", ""))
            name = upstream.removeprefix("https://").rstrip("/").lower()
            if (images.DOCKER_HUB if name in images.DOCKER_HUB_ALIASES else name) != host:
                continue
            upstream_prefix = str(rule.get("upstreamRepositoryPrefix", "ROOT")).strip("/")
            if upstream_prefix not in ("", "ROOT") and not path.startswith(f"{upstream_prefix}/"):
                continue
            rest = path if upstream_prefix in ("", "ROOT") else path.removeprefix(f"{upstream_prefix}/")
            prefix = str(rule["ecrRepositoryPrefix"])
            pull = f"{config['target']}/{rest}" if prefix == "ROOT" else f"{config['target']}/{prefix}/{rest}"
            found.append(Cached(f"{host}/{path}", prefix, upstream, pull))
            break
    return found


def pull_through_rules(ecr: Any, account: str) -> list[dict[str, Any]]:
    """Every pull-through cache rule of the account's registry (boto3/botocore's ECR client)."""
    pages = ecr.get_paginator("describe_pull_through_cache_rules").paginate(registryId=account)
    return [rule for page in pages for rule in page.get("pullThroughCacheRules", [])]


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
        self.created: set[str] = set()  # target repositories this run created (empty but for its uploads)
        self.counts = BlobCounts()

    def ensure(
        self,
        source: Registry,
        source_repository: str,
        target: Registry,
        target_repository: str,
        wanted: list[dict[str, Any]],
    ) -> None:
        """Every blob of `wanted` in the target repository: first those no other job is copying (each
        claimed, then copied), then the others' (waited for): a job does not idle behind another's upload
        while it has blobs of its own to copy. Each claim is settled before any wait, so two jobs waiting
        on each other's blobs cannot block. The first failure is raised once all are settled."""
        mine, theirs = [], []
        with self.lock:
            for blob in wanted:
                key = (target_repository, str(blob["digest"]))
                if key in self.claims:
                    theirs.append(self.claims[key])
                else:
                    self.claims[key] = Future()
                    mine.append((blob, self.claims[key]))
        failure: BaseException | None = None
        for blob, claim in mine:
            try:
                self._copy(source, source_repository, target, target_repository, blob)
            except BaseException as exc:  # settled in the claim, raised below
                claim.set_exception(exc)
                failure = failure or exc
            else:
                claim.set_result(None)
        if failure is not None:
            raise failure
        for claim in theirs:
            claim.result()  # the owner's failure is this job's too

    def _copy(
        self, source: Registry, source_repository: str, target: Registry, target_repository: str, blob: dict[str, Any]
    ) -> None:
        digest, size = str(blob["digest"]), int(blob["size"])
        # A repository this run created holds only what the run put there: no need to ask.
        if target_repository not in self.created and target.has_blob(target_repository, digest):
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
    """HEAD the tag at the target, then at the source (neither a pull); GET the source's manifest (a pull)
    only when they differ. A tag the target lacks is read at once: its manifest is needed, and a HEAD
    before the GET would tell nothing. So an unchanged tag costs one HEAD at each end, a new one a GET at
    the source. The target may be still on its way (its helper call running) when a comparison starts."""
    target = target.result() if isinstance(target, Future) else target
    what = f"{job.source} -> {target.host}/{job.target_repository}:{job.tag}"
    try:
        held = target.manifest_digest(job.target_repository, job.tag)
        # A platform filter makes an index of its own digest: only the source's manifest tells it.
        if held is not None and not job.platforms:
            head = source.head_manifest(job.source_repository, job.tag)
            if head is None:
                return Compared(Result("failed", what, "no such tag at the source"))
            if held == head[0]:
                return Compared(Result("unchanged", what, held), None, head[0], head[1])
        manifest = source.manifest(job.source_repository, job.tag)
        if manifest is not None and job.platforms:
            return _compare_filtered(job, manifest, held, what)
    except RegistryError as exc:
        return Compared(Result("stopped" if isinstance(exc, RateLimited) else "failed", what, str(exc)))
    if manifest is None:
        return Compared(Result("failed", what, "no such tag at the source"))
    return Compared(None, manifest, manifest.digest, manifest.media_type)


def _compare_filtered(job: Copy, manifest: Manifest, held: str | None, what: str) -> Compared:
    """The source's manifest with the job's platforms only (an index of its own digest), compared with
    what the target holds (`held`: its digest, or None)."""
    filtered = filter_index(manifest, job.platforms)
    if filtered is None:
        return Compared(Result("failed", what, f"the index has none of the platforms {', '.join(job.platforms)}"))
    if held == filtered.digest:
        unchanged = Result("unchanged", what, _describe(filtered, 0), isinstance(filtered, FilteredIndex))
        return Compared(unchanged, None, filtered.digest, filtered.media_type)
    return Compared(None, filtered, filtered.digest, filtered.media_type)


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
    blobs.ensure(source, source_repository, target, target_repository, manifest.blobs())
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
        line = ", ".join(f"{counts[status]} {status}" for status in ("copied", "unchanged", "would copy", "stopped",
                         "failed") if counts[status] or status in ("copied", "failed"))  # fmt: skip
        filtered = sum(result.filtered for result in self.results)
        return f"{line}; {filtered} with platforms filtered (a new digest, not the source's)" if filtered else line

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
                "platforms_filtered": sum(result.filtered for result in self.results),
                "results": [_as_dict(result) for result in self.results],
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
    """Compare every tag and copy it (concurrently, each job its tag): a job that finds a copy due makes sure
    its target repository exists first (the first job of a repository asks, creating it if missing, unless
    dry_run: only when a copy is due does the AWS API get asked; the others wait for it), so copies into one
    repository start while the others' are still being compared or created. Each blob is copied once per
    target repository, and each tag's referrers (unchanged tags' too). Results in plan order."""
    results = [Result("failed", pattern, "no tag matches this pattern") for pattern in plan_.unmatched]
    sources = {host: registry(host) for host in dict.fromkeys(job.source_host for job in plan_.copies)}
    blobs = Blobs()
    lock = threading.Lock()
    repositories: dict[str, Future[bool]] = {}  # target repository -> whether this run created it

    def ready(name: str) -> None:
        with lock:
            claim, owner = repositories.get(name), False
            if claim is None:
                claim, owner = repositories.setdefault(name, Future()), True
        if not owner:
            claim.result()  # the owner's failure (the AWS API's) is this job's too
            return
        try:
            created = bool(ensure_repositories([name], dry_run))
        except BaseException as exc:
            claim.set_exception(exc)
            raise
        if created and not dry_run:
            blobs.created.add(name)
        claim.set_result(created)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        # The target's client (its helper call, a GetAuthorizationToken) is made while the sources' are.
        target_ready = pool.submit(registry, plan_.target)

        def one(job: Copy) -> list[Result]:
            source = sources[job.source_host]
            found = compare(job, source, target_ready)
            target = target_ready.result()
            if found.result is not None:
                advance(found.result)
                if found.result.status == "unchanged" and job.referrers and not dry_run:
                    return [found.result, *copy_referrers(job, found, source, target, blobs)]
                return [found.result]
            assert found.manifest is not None
            ready(job.target_repository)
            if dry_run:
                result = Result("would copy", f"{job.source} -> {target.host}/{job.target_repository}:{job.tag}",
                                _describe(found.manifest, 0))  # fmt: skip
            else:
                result = transfer(job, found.manifest, source, target, blobs)
            result = dataclasses.replace(result, filtered=isinstance(found.manifest, FilteredIndex))
            advance(result)
            if result.status == "copied" and job.referrers:
                return [result, *copy_referrers(job, found, source, target, blobs)]
            return [result]

        done = list(pool.map(one, plan_.copies))
    status = "would create" if dry_run else "created"
    made = sorted(name for name, claim in repositories.items() if claim.result())
    results += [Result(status, f"{plan_.target}/{name}", "repository") for name in made]
    results += [result for found in done for result in found]
    limits, stops = {}, []
    for host, source in sources.items():
        if source.limit is not None:
            limits[host] = {**source.limit.as_dict(), "floor": source.floor, "stopped": source.stopped is not None}
        if source.stopped is not None:
            left = sum(1 for result in results if result.status == "stopped" and result.what.startswith(f"{host}/"))
            stops.append(f"{source.stopped} ({left} not copied)")
    return Outcome(results, blobs.counts, plan_.shard, limits, stops)


def _as_dict(result: Result) -> dict[str, Any]:
    found = {"status": result.status, "what": result.what, "detail": result.detail}
    return {**found, "filtered": True} if result.filtered else found


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
    if isinstance(manifest, FilteredIndex):
        return (f"{manifest.digest} ({manifest.kept} of {manifest.total} platforms: a filtered index, a new digest; "
                f"the source's is {manifest.source_digest})")  # fmt: skip
    return f"{manifest.digest} ({children} platforms)" if children else manifest.digest
