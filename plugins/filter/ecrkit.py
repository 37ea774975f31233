"""Jinja filters that hand the roles' inputs to the ecrkit package, which holds all the logic.

Every ecrkit error becomes an AnsibleFilterError, so the host fails with ecrkit's message
(the bad value, where it came from, what is accepted) before any task changes anything.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar

from ansible.errors import AnsibleFilterError

try:
    from ecrkit import helper
    from ecrkit.errors import EcrkitError
    from ecrkit.renderers import docker_config
    from ecrkit.settings import CredentialRule
except ImportError as exc:  # pragma: no cover - depends on the controller's Python
    raise AnsibleFilterError(
        f"the ecrkit package is not importable by the controller's Python ({exc}); "
        "run ansible-playbook from the project's virtualenv (make venv)"
    ) from exc

F = TypeVar("F", bound=Callable[..., Any])


def _reported(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (EcrkitError, ValueError) as exc:
            raise AnsibleFilterError(str(exc)) from None

    return wrapper  # type: ignore[return-value]


@_reported
def ecrkit_credential_rule(
    registries: list[str], include_public: bool = False, creds_store: bool = False, source: str = "registries"
) -> dict[str, Any]:
    """Validate the registries and apply ecrkit's one rule: {registries, creds_store}."""
    rule = CredentialRule.build(registries, include_public=include_public, force_creds_store=creds_store, source=source)
    return {"registries": list(rule.registries), "creds_store": rule.creds_store}


@_reported
def ecrkit_docker_configs(
    paths: list[str], existing: Mapping[str, str], rule: Mapping[str, Any], state: str, replace_invalid: bool = False
) -> list[dict[str, Any]]:
    """Render every config.json before any is written, so one bad file stops the host untouched.

    `existing` maps a path to its base64 content (as slurp returns it) for files that exist.
    """
    credential_rule = CredentialRule(tuple(rule["registries"]), bool(rule["creds_store"]))
    rendered: list[dict[str, Any]] = []
    for path in paths:
        before = base64.b64decode(existing[path]).decode("utf-8") if path in existing else None
        if before is None and state == "absent":
            rendered.append({"path": path, "content": None, "changed": False, "secrets": False})
            continue
        after = docker_config.render(
            before,
            credential_rule,
            path=path,
            state=state,  # type: ignore[arg-type]
            replace_invalid=replace_invalid,
        )
        secrets = docker_config.has_secrets(docker_config.parse(after, path))
        rendered.append(
            {
                "path": path,
                "content": after,
                "changed": after != before,
                "secrets": secrets,
                # What a diff may show: looping over the entries above would echo the content.
                "redacted": {
                    "path": path,
                    "before": docker_config.redact(before),
                    "after": docker_config.redact(after),
                },
            }
        )
    return rendered


@_reported
def ecrkit_helper_plan(method: str, **inputs: str) -> dict[str, Any]:
    """Validate the install inputs and say where the helper comes from and where it goes."""
    return helper.install_plan(method, **inputs)


@_reported
def ecrkit_helper_version(output: str) -> str:
    """The version number from `docker-credential-ecr-login version`."""
    return helper.parse_version(output)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "ecrkit_credential_rule": ecrkit_credential_rule,
            "ecrkit_docker_configs": ecrkit_docker_configs,
            "ecrkit_helper_plan": ecrkit_helper_plan,
            "ecrkit_helper_version": ecrkit_helper_version,
        }
