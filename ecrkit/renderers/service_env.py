"""The environment a process that runs the helper needs, as a systemd drop-in or an env file.

GitLab Runner's manager runs the helper as its own child: the region (for credsStore's
`list`), the cache directory and the PATH must be in the *service's* environment, not a
login's. A runner that runs as a container gets the same variables as a `--env-file`; a Mesos
agent gets them merged into its own environment file, whose other lines are the agent's.
"""

from __future__ import annotations

from ecrkit.constants import HELPER_BINARY
from ecrkit.errors import InputError
from ecrkit.settings import CredentialRule, registry_region, validate_absolute_path, validate_region

# What systemd gives a service without Environment=PATH (Debian 12 and other merged-/usr systems).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"


def environment(
    rule: CredentialRule, *, region: str = "", cache_dir: str = "", helper_dir: str = "", source: str = ""
) -> dict[str, str]:
    """AWS_REGION (given, else the first named registry's), AWS_ECR_CACHE_DIR, and a PATH only
    when the helper's directory is not on systemd's default one."""
    env: dict[str, str] = {}
    if not region and rule.registries:
        region = registry_region(rule.registries[0]) or ""
    if not region and rule.needs_region:
        raise InputError(
            f"{source}region", region, "an AWS region such as us-east-1: with credsStore, callers of the helper's "
            "`list` (GitLab Runner) take the region from AWS_REGION"
        )  # fmt: skip
    if region:
        env["AWS_REGION"] = validate_region(region, f"{source}region")
    if cache_dir:
        env["AWS_ECR_CACHE_DIR"] = validate_absolute_path(cache_dir, f"{source}cache_dir")
    if helper_dir and validate_absolute_path(helper_dir, f"{source}helper_dir") not in SYSTEMD_PATH.split(":"):
        env["PATH"] = f"{helper_dir}:{SYSTEMD_PATH}"
    return env


def drop_in(env: dict[str, str]) -> str:
    """A `[Service]` drop-in; each assignment quoted as systemd parses it."""
    lines = [
        f"# Managed by ecrkit: what {HELPER_BINARY} needs in this service's own environment.",
        "[Service]",
    ]
    lines += [f'Environment="{key}={value}"' for key, value in env.items()]
    return "\n".join(lines) + "\n"


def env_file(env: dict[str, str]) -> str:
    """For `docker run --env-file` (a runner in a container): one KEY=value per line, no quoting."""
    return "".join(f"{key}={value}\n" for key, value in env.items())


def merge_env_file(text: str | None, env: dict[str, str]) -> str:
    """An EnvironmentFile (a Mesos agent's) with ecrkit's keys set and every other line kept as it
    was: a key's last assignment (the one systemd applies) is replaced, a missing key appended."""
    lines = (text or "").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for key, value in env.items():
        assigned = [index for index, line in enumerate(lines) if line.startswith(f"{key}=")]
        if assigned:
            lines[assigned[-1]] = f"{key}={value}\n"
        else:
            lines.append(f"{key}={value}\n")
    return "".join(lines)
