"""Jinja filters that hand the roles' inputs to the ecrkit package, which holds all the logic.

Every ecrkit error becomes an AnsibleFilterError, so the host fails with ecrkit's message
(the bad value, where it came from, what is accepted) before any task changes anything.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from ansible.errors import AnsibleFilterError

try:
    # Each role's decision is a function of ecrkit.plans; the rest are the smaller decisions the roles ask for.
    from ecrkit import __version__ as ECRKIT_VERSION
    from ecrkit import checks, constants, ecr_account, helper, hoststate, plans, settings
    from ecrkit.constants import HELPER_BINARY
    from ecrkit.errors import EcrkitError
    from ecrkit.renderers import aws_config, mirror_service, registries_conf
except ImportError as missing:  # pragma: no cover - depends on the controller's Python
    # Raised at import, Ansible would skip this file and say only "no filter named ...": the filters
    # load, and each call stops with what to install (the version of this collection, from its
    # MANIFEST.json once installed, from galaxy.yml in a checkout).
    def _collection_version() -> str:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
        try:
            with open(os.path.join(root, "MANIFEST.json")) as manifest:
                return str(json.load(manifest)["collection_info"]["version"])
        except (OSError, ValueError, KeyError):
            pass
        try:
            with open(os.path.join(root, "galaxy.yml")) as galaxy:
                found = re.search(r"^version:\s*[\"']?([^\s\"']+)", galaxy.read(), re.MULTILINE)
            return found.group(1) if found else ""
        except OSError:
            return ""

    _VERSION = _collection_version()
    _MISSING = (
        f"the ecrkit.ecr filters need the Python package ecrkit in the Python that runs ansible-playbook "
        f"({sys.executable}), which cannot import it ({missing}): "
        f"pip install 'ecrkit{'==' + _VERSION if _VERSION else ''}' into that Python"
        f"{' (the version of this collection)' if _VERSION else ''}"
    )

    class _Missing:
        """Stands for each name imported from ecrkit: any use raises the message above."""

        def __getattr__(self, name: str) -> Any:
            raise AnsibleFilterError(_MISSING)

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise AnsibleFilterError(_MISSING)

        def __fspath__(self) -> str:
            raise AnsibleFilterError(_MISSING)

    class EcrkitError(Exception):  # type: ignore[no-redef]  # named by except clauses
        pass

    checks = constants = ecr_account = helper = hoststate = plans = settings = _Missing()  # type: ignore[assignment]
    aws_config = mirror_service = registries_conf = _Missing()  # type: ignore[assignment]
    HELPER_BINARY = ECRKIT_VERSION = _Missing()  # type: ignore[assignment, misc]

if TYPE_CHECKING:  # the probe's facts as ecrkit types them (Ansible hands over plain dicts)
    from ecrkit.probe import ProbeResult

F = TypeVar("F", bound=Callable[..., Any])


def _reported(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (EcrkitError, ValueError) as exc:
            raise AnsibleFilterError(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _error_as_data(plan: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The plan with `error: ""`, or only the error (the bad value and where it came from, never a
    file's content): a plan holds secrets, so its task runs under no_log, and the role fails in
    the next task, where the message shows."""
    try:
        return {**plan(), "error": ""}
    except (EcrkitError, ValueError) as exc:
        return {"error": str(exc)}


def ecrkit_version(package: str) -> str:
    """The ecrkit package's version: `'ecrkit' | ecrkit.ecr.version`.

    Each role's first task names it. ansible-playbook templates task names in its own process,
    before it forks a worker per host and task, so this loads the package there once and every
    worker inherits it; a worker that had to import it would pay that for each task and host
    (0.17 CPU-s, about four times a builtin module's task: bench/README.md). So are the tables
    the plans read on first use (botocore's partitions, for every registry validated).
    """
    if package != "ecrkit":
        raise AnsibleFilterError(f"ecrkit.ecr.version: {package!r} is not accepted; expected 'ecrkit'")
    settings.load_partitions()
    return str(ECRKIT_VERSION)


def ecrkit_default(name: str) -> Any:
    """The package's default for a role variable (ecrkit.constants.ROLE_DEFAULTS), so that
    defaults/main.yml does not restate it: `'ecr_credential_helper_version' | ecrkit.ecr.default`."""
    if name not in constants.ROLE_DEFAULTS:
        known = sorted(constants.ROLE_DEFAULTS)
        raise AnsibleFilterError(f"ecrkit.ecr.default: {name!r} is not accepted; expected one of {known}")
    return constants.role_default(name)


@_reported
def ecrkit_sso_profile(registries: list[str], form: str, helper_version: str, **inputs: str) -> dict[str, str]:
    """Validate the SSO profile's inputs (account and region default from the first registry);
    form `auto` is the one the installed helper reads."""
    chosen = aws_config.form_for(helper_version) if form == "auto" else form
    profile = aws_config.SsoProfile.build(**inputs, form=chosen, registries=registries, prefix="aws_sso_profile_")
    return asdict(profile)


def ecrkit_aws_configs(probe: ProbeResult, users: list[str], profile: Mapping[str, str]) -> dict[str, Any]:
    """Every user's ~/.aws/config with the profile, or the error that stops them all.

    The error comes back as data (the path and why, never the content) so that the role can
    fail outside the no_log that the rendered files need.
    """
    try:
        files = hoststate.aws_config_files(probe, users, aws_config.SsoProfile(**profile))
        return {**hoststate.users_files_plan(files), "error": ""}
    except EcrkitError as exc:
        return {"files": [], "error": str(exc)}


def ecrkit_docker_auth_plan(probe: ProbeResult, options: Mapping[str, Any]) -> dict[str, Any]:
    """docker_auth_config's rule and every user's config.json, from what the probe read and the
    role's variables without their prefix (ecrkit.plans.docker_auth_plan); or the error."""
    return _error_as_data(lambda: plans.docker_auth_plan(probe, options))


@_reported
def ecrkit_ecr_account(declaration: Mapping[str, Any]) -> dict[str, Any]:
    """Validate an account's ECR declaration and return what the API takes (no token in it)."""
    return ecr_account.plan(declaration)


@_reported
def ecrkit_replication_sources(hostvars: Mapping[str, Any], hosts: list[str], account: str, region: str) -> list[str]:
    """The accounts among the inventory's `hosts` (ecr_accounts) that replicate into this account and region."""
    peers = [
        {
            "host": host,
            "account_id": hostvars[host].get("ecr_account_id"),
            "region": hostvars[host].get("ecr_account_region"),
            "replication": hostvars[host].get("ecr_account_replication"),
        }
        for host in hosts
    ]
    return ecr_account.replication_sources(peers, account, region)


@_reported
def ecrkit_helper_plan(method: str, **inputs: str) -> dict[str, Any]:
    """Validate the install inputs and say where the helper comes from and where it goes."""
    return helper.install_plan(method, **inputs)


@_reported
def ecrkit_helper_changes(probe: ProbeResult, plan: Mapping[str, Any], **settings: Any) -> dict[str, Any]:
    """What the ecr_credential_helper role must write, given what the probe saw."""
    return hoststate.helper_changes(probe, plan, **settings)


@_reported
def ecrkit_helper_version(probe: ProbeResult, missing: str | None = None) -> str:
    """The version number from the probe's run of `docker-credential-ecr-login -v` (or `version`);
    `missing` where it did not run (no helper yet), which otherwise fails."""
    version = hoststate.installed_version(probe)
    if not version and missing is not None:
        return missing
    if not version:
        said = [command.get("stderr") or command.get("stdout") for command in probe.get("commands") or []]
        raise ValueError(f"the installed {HELPER_BINARY} did not report a version: {said!r}")
    return version


@_reported
def ecrkit_registries_conf(registry: str, cache_prefix: str, upstream: str) -> str:
    """The registries.conf drop-in mirroring `upstream` through the cache."""
    sources = ("registries_conf_registry", "registries_conf_cache_prefix", "registries_conf_upstream")
    return registries_conf.render(registry, cache_prefix, upstream, sources=sources)


@_reported
def ecrkit_mirror_plan(config: Any, options: Mapping[str, Any], header: str = "") -> dict[str, Any]:
    """The ecr_mirror role's files: the mirror config, the service and timer, ecrkit's own files."""
    environment = options.get("environment") or {}
    if not isinstance(environment, Mapping):
        raise AnsibleFilterError(f"ecr_mirror_environment: {environment!r} is not accepted; expected a mapping")
    settings = mirror_service.Options(**{
        **{key: value for key, value in options.items() if key != "environment"},
        "environment": tuple((str(key), str(value)) for key, value in environment.items()),
    })  # fmt: skip
    plain = json.loads(json.dumps(config))  # Ansible's own str and dict types, as YAML can write them
    return mirror_service.plan(plain, settings, header=header)


def ecrkit_runner_plan(probe: ProbeResult, options: Mapping[str, Any]) -> dict[str, Any]:
    """gitlab_runner_ecr's files by name (service_env, config_toml, userdata) and its credential
    rule, from what the probe read and the role's variables without their prefix (ecrkit.plans);
    or the error."""
    return _error_as_data(lambda: plans.runner_plan(probe, options))


@_reported
def ecrkit_marathon_plan(options: Mapping[str, Any]) -> dict[str, Any]:
    """marathon_agent_ecr's rule, agent environment, docker-tar arguments and --docker_config,
    from the role's variables without their prefix (ecrkit.plans.marathon_plan)."""
    return plans.marathon_plan(options)


@_reported
def ecrkit_validate_args(
    options: Mapping[str, Any],
    services: list[str],
    users: list[str],
    variables: Mapping[str, Any] | None = None,
    groups: list[str] | None = None,
) -> dict[str, Any]:
    """The validator probe's arguments: each service and user, a live get per registry of the
    rule that docker_auth_config's variables make (`options`, unprefixed), and what the host's
    groups add (a runner manager's config.toml, a Marathon agent's task archive)."""
    return plans.validate_args(options, services, users, variables, groups or [])


@_reported
def ecrkit_findings(probe: ProbeResult, registries: list[str]) -> list[dict[str, Any]]:
    """The judge's findings on what the probe saw, as `ecrkit validate` reports them."""
    return [asdict(finding) for finding in checks.judge(probe, registries)]


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        """Called by fully qualified name, e.g. `ecrkit.ecr.runner_plan`."""
        return {
            "aws_configs": ecrkit_aws_configs,
            "default": ecrkit_default,
            "docker_auth_plan": ecrkit_docker_auth_plan,
            "ecr_account": ecrkit_ecr_account,
            "findings": ecrkit_findings,
            "helper_changes": ecrkit_helper_changes,
            "helper_plan": ecrkit_helper_plan,
            "helper_version": ecrkit_helper_version,
            "marathon_plan": ecrkit_marathon_plan,
            "mirror_plan": ecrkit_mirror_plan,
            "registries_conf": ecrkit_registries_conf,
            "replication_sources": ecrkit_replication_sources,
            "runner_plan": ecrkit_runner_plan,
            "sso_profile": ecrkit_sso_profile,
            "validate_args": ecrkit_validate_args,
            "version": ecrkit_version,
        }
