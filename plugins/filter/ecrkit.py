"""Jinja filters that hand the roles' inputs to the ecrkit package, which holds all the logic.

Every ecrkit error becomes an AnsibleFilterError, so the host fails with ecrkit's message
(the bad value, where it came from, what is accepted) before any task changes anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from ansible.errors import AnsibleFilterError

try:
    # Each role's decision is a function of ecrkit.plans; the rest are the smaller decisions the roles ask for.
    from ecrkit import __version__ as ECRKIT_VERSION
    from ecrkit import checks, constants, ecr_account, job_hosts, plans, settings
    from ecrkit.errors import EcrkitError
except ImportError as missing:  # pragma: no cover - depends on the controller's Python
    # Raised at import, Ansible would skip this file and say only "no filter named ...": the filters
    # load, and each call stops with what to install.
    from ansible_collections.ecrkit.ecr.plugins.plugin_utils.package import missing_package

    _MISSING = missing_package("the ecrkit.ecr filters", missing)

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

    checks = constants = ecr_account = job_hosts = plans = settings = _Missing()  # type: ignore[assignment]
    ECRKIT_VERSION = _Missing()  # type: ignore[assignment]

if TYPE_CHECKING:  # the probe's facts as ecrkit types them (Ansible hands over plain dicts)
    from ecrkit.probe_facts import ProbeResult

F = TypeVar("F", bound=Callable[..., Any])


def _reported(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (EcrkitError, ValueError) as exc:
            raise AnsibleFilterError(str(exc)) from None

    return wrapper  # type: ignore[return-value]


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
def ecrkit_autoscaling_group(declaration: Mapping[str, Any]) -> dict[str, Any]:
    """The role autoscaling_group's declaration, validated before any API call, as the module takes it."""
    return job_hosts.plan(declaration, plans.variables("autoscaling_group_"))


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
            "autoscaling_group": ecrkit_autoscaling_group,
            "default": ecrkit_default,
            "ecr_account": ecrkit_ecr_account,
            "findings": ecrkit_findings,
            "replication_sources": ecrkit_replication_sources,
            "validate_args": ecrkit_validate_args,
            "version": ecrkit_version,
        }
