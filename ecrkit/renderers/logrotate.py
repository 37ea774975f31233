"""The logrotate rule for the helper's log, which the helper appends to and never rotates."""

from __future__ import annotations

from collections.abc import Iterable

from ecrkit.settings import validate_absolute_path

HEADER = "# Managed by ecrkit (Ansible role ecr_credential_helper); local changes are overwritten.\n"


def render(cache_dir: str, owner: str, group: str, extra_paths: Iterable[str] = ()) -> str:
    """One rule for the log under the cache directory and any extra logs.

    The helper reopens its log on every call, so plain rotation (no copytruncate) is safe;
    `su` makes logrotate act as the directory's owner, which it demands for a directory
    that is not root's.
    """
    logs = [f"{validate_absolute_path(cache_dir, 'ecr_credential_helper_cache_dir').rstrip('/')}/log/ecr-login.log"]
    logs += [
        validate_absolute_path(path, f"ecr_credential_helper_logrotate_extra_paths[{index}]")
        for index, path in enumerate(extra_paths)
    ]
    body = "\n".join(logs)
    return (
        f"{HEADER}{body}\n{{\n"
        f"    su {owner} {group}\n"
        "    weekly\n    rotate 4\n    maxsize 10M\n    compress\n    delaycompress\n    missingok\n    notifempty\n"
        "}\n"
    )
