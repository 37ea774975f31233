"""`ecrkit mirror` on a schedule: a systemd service and timer, and the files a host needs to run it.

The service is a oneshot run as a system user of its own (DynamicUser= would need mount
namespaces, which containers often lack) with its own state and cache directories (the
helper's token cache among them, so one token serves a day of runs), on the host's instance
profile: no credentials are written. Its output (each result and the summary line) goes to the
journal under the unit's name, and a last line there gives the exit status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ecrkit import mirror
from ecrkit.constants import MIRROR_JOBS
from ecrkit.errors import InputError
from ecrkit.settings import private_registry, validate_absolute_path, validate_region

UNIT = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9:_.-]{0,200}\Z", re.ASCII)
# What systemd takes for OnCalendar= and RandomizedDelaySec= is checked by systemd itself
# (`systemd-analyze calendar`); here only what would break the unit file.
UNIT_VALUE = re.compile(r"[ -~]{1,200}\Z", re.ASCII)
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,100}\Z", re.ASCII)
PACKAGE = Path(mirror.__file__).parent


@dataclass(frozen=True)
class Options:
    unit: str = "ecrkit-mirror"
    schedule: str = "daily"
    randomized_delay: str = "15m"
    jobs: int = 4
    region: str = ""
    environment: tuple[tuple[str, str], ...] = ()
    install_dir: str = "/opt/ecrkit"
    config_path: str = "/etc/ecrkit/mirror.yml"
    python: str = "/usr/bin/python3"


def unit_paths(unit: str) -> dict[str, str]:
    """The mirror's systemd units, by name, at their paths."""
    return {f"{unit}.{kind}": f"/etc/systemd/system/{unit}.{kind}" for kind in ("service", "timer")}


def options_of(given: Mapping[str, Any], prefix: str = "ecr_mirror_") -> Options:
    """The role's variables (unprefixed) as Options; `environment` a mapping of NAME: value."""
    environment = given.get("environment") or {}
    if not isinstance(environment, Mapping):
        raise InputError(f"{prefix}environment", environment, "a mapping of NAME: value")
    known = {key: given[key] for key in Options.__dataclass_fields__ if key in given and key != "environment"}
    return Options(**known, environment=tuple((str(key), str(value)) for key, value in environment.items()))


def plan(config: Any, options: Options, *, header: str = "", prefix: str = "ecr_mirror_") -> dict[str, Any]:
    """The mirror config (YAML), the service and timer units and the package's files to copy, after
    every input is checked (errors name the role variable)."""
    checked = mirror.check(config, f"{prefix}config")
    _, target_region, _ = private_registry(checked["target"], f"{prefix}config: target")
    region = validate_region(options.region, f"{prefix}region") if options.region else target_region
    if not UNIT.match(options.unit) or options.unit.endswith((".service", ".timer")):
        raise InputError(f"{prefix}unit", options.unit, "a unit name without suffix, e.g. ecrkit-mirror")
    for name in ("schedule", "randomized_delay"):
        if not UNIT_VALUE.match(getattr(options, name)):
            raise InputError(f"{prefix}{name}", getattr(options, name), "a systemd time, e.g. daily or 15m")
    low, high = MIRROR_JOBS
    if isinstance(options.jobs, bool) or not isinstance(options.jobs, int) or not low <= options.jobs <= high:
        raise InputError(f"{prefix}jobs", options.jobs, f"a whole number from {low} to {high}")
    for key, value in options.environment:
        if not ENV_NAME.match(key) or not UNIT_VALUE.match(value) or '"' in value or "\\" in value:
            raise InputError(f"{prefix}environment", key, "NAME: value pairs, names in capitals, printable values")
    install_dir = validate_absolute_path(options.install_dir, f"{prefix}install_dir")
    config_path = validate_absolute_path(options.config_path, f"{prefix}config_path")
    python = validate_absolute_path(options.python, f"{prefix}python")
    lead = f"{header.rstrip()}\n" if header.strip() else ""
    state, cache = f"/var/lib/{options.unit}", f"/var/cache/{options.unit}"
    environment = {
        "HOME": state,  # the helper's log, ~/.ecr/log
        "AWS_REGION": region,
        "AWS_ECR_CACHE_DIR": cache,  # one token for many runs
        "PYTHONPATH": f"{install_dir}/lib",
        "PYTHONDONTWRITEBYTECODE": "1",
        **dict(options.environment),
    }
    service = "\n".join([
        lead + "[Unit]",
        f"Description=ecrkit mirror: copy the images {config_path} lists into ECR",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        f"User={options.unit}",
        f"Group={options.unit}",
        f"StateDirectory={options.unit}",
        f"CacheDirectory={options.unit}",
        *(f'Environment="{key}={value}"' for key, value in environment.items()),
        f"ExecStart={python} -m ecrkit mirror --config {config_path} --jobs {options.jobs}",
        f"ExecStopPost=/bin/sh -c 'echo \"{options.unit}: exit status $$EXIT_STATUS ($$SERVICE_RESULT)\"'",
        f"SyslogIdentifier={options.unit}",
        "TimeoutStartSec=6h",
        "",
    ])  # fmt: skip
    timer = "\n".join([
        lead + "[Unit]",
        f"Description=ecrkit mirror on a schedule ({options.schedule})",
        "",
        "[Timer]",
        f"OnCalendar={options.schedule}",
        f"RandomizedDelaySec={options.randomized_delay}",
        "Persistent=true",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])  # fmt: skip
    return {
        "config": lead + yaml.safe_dump(checked, sort_keys=False, default_flow_style=False),
        "service": service,
        "timer": timer,
        "service_path": unit_paths(options.unit)[f"{options.unit}.service"],
        "timer_path": unit_paths(options.unit)[f"{options.unit}.timer"],
        "user": options.unit,
        "home": state,
        "directories": [install_dir, f"{install_dir}/lib", *(f"{install_dir}/lib/{d}" for d in package_directories())],
        "files": [{"src": str(PACKAGE / name), "dest": f"{install_dir}/lib/ecrkit/{name}"} for name in package_files()],
    }


def package_directories() -> list[str]:
    """ecrkit's own directories, relative to lib/ (no __pycache__)."""
    found = {f"ecrkit/{path.parent.relative_to(PACKAGE)}".removesuffix("/.") for path in _package_paths()}
    return sorted(found | {"ecrkit"})


def package_files() -> list[str]:
    """ecrkit's source and data files, relative to the package (no bytecode: the host compiles its own)."""
    return sorted(str(path.relative_to(PACKAGE)) for path in _package_paths())


def _package_paths() -> list[Path]:
    return [path for path in PACKAGE.rglob("*") if path.is_file() and "__pycache__" not in path.parts]
