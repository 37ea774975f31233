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
    from ecrkit.settings import CredentialRule, validate_absolute_path
except ImportError as exc:  # pragma: no cover - depends on the controller's Python
    raise AnsibleFilterError(
        f"the ecrkit package is not importable by the controller's Python ({exc}); "
        "run ansible-playbook from the project's virtualenv (make venv)"
    ) from exc

F = TypeVar("F", bound=Callable[..., Any])
INSTALL_METHODS = ("package", "release", "url", "controller_file")


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
    rendered = []
    for path in paths:
        before = base64.b64decode(existing[path]).decode("utf-8") if path in existing else None
        if before is None and state == "absent":
            rendered.append({"path": path, "content": None, "changed": False, "secrets": False})
            continue
        after = docker_config.render(
            before, credential_rule, path=path, state=state,  # type: ignore[arg-type]
            replace_invalid=replace_invalid,
        )
        secrets = docker_config.has_secrets(docker_config.parse(after, path))
        rendered.append(
            {
                "path": path,
                "content": after,
                "changed": after != before,
                "secrets": secrets,
                "before_redacted": docker_config.redact(before),
                "after_redacted": docker_config.redact(after),
            }
        )
    return rendered


@_reported
def ecrkit_helper_plan(
    method: str,
    *,
    architecture: str,
    install_dir: str,
    version: str,
    release_base_url: str,
    url: str = "",
    sha256: str = "",
    src: str = "",
) -> dict[str, Any]:
    """Validate the install inputs and say where the helper comes from and where it goes."""
    if method not in INSTALL_METHODS:
        raise ValueError(
            f"ecr_credential_helper_install_method: {method!r} is not accepted; expected one of {', '.join(INSTALL_METHODS)}"
        )
    directory = validate_absolute_path(install_dir, "ecr_credential_helper_install_dir")
    plan: dict[str, Any] = {"method": method, "path": f"{directory.rstrip('/')}/{helper.HELPER_BINARY}"}
    if method == "package":
        plan["path"] = f"/usr/bin/{helper.HELPER_BINARY}"
    elif method == "release":
        plan.update(helper.release(version, architecture, release_base_url))
    elif method == "url":
        if not url.startswith(("https://", "http://", "s3://")):
            raise ValueError(f"ecr_credential_helper_url: {url!r} is not accepted; expected an https://, http:// or s3:// URL")
        digest = helper.validate_sha256(sha256, "ecr_credential_helper_sha256 (required with install_method url)")
        plan.update(url=url, sha256=digest, checksum=f"sha256:{digest}", s3=url.startswith("s3://"))
    else:
        if not src:
            raise ValueError("ecr_credential_helper_src: '' is not accepted; expected the binary's path on the controller")
        plan.update(src=src, sha256=helper.validate_sha256(sha256, "ecr_credential_helper_sha256") if sha256 else "")
    return plan


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
