"""From probe facts to the writes a converge needs: an up-to-date host needs none."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ecrkit.constants import LOGROTATE_PATH
from ecrkit.errors import EcrkitError, InputError
from ecrkit.helper import install_plan
from ecrkit.hoststate import differs, helper_changes
from ecrkit.probe import ProbeResult
from ecrkit.renderers.logrotate import render as render_logrotate
from tests.facts import MISSING, directory_state, file_state, probe_result, user

PROBE = Path(__file__).resolve().parent.parent / "scripts" / "ecrkit_probe.py"


def test_differs_checks_only_what_is_expected() -> None:
    state = file_state(mode="0600", owner="ci", group="ci", sha256="a")
    assert not differs(state, mode="0600", owner="ci", sha256="a")
    assert differs(state, mode="0644")
    assert differs(state, owner="root")
    assert differs(state, sha256="b")
    assert differs(state, kind="directory")
    assert differs({"exists": False})
    assert differs({"exists": None, "error": "Permission denied"})
    assert differs(None)


def host_facts(binary: Path, plan: dict[str, Any], logrotate: str) -> ProbeResult:
    """Probe facts of a host where everything already is as the role makes it."""
    sha = hashlib.sha256(binary.read_bytes()).hexdigest()
    rule_sha = hashlib.sha256(logrotate.encode()).hexdigest()
    facts = probe_result(
        users={"root": user("root")},
        paths={
            plan["path"]: file_state(mode="0755", sha256=sha),
            "/usr/local/bin": directory_state(),
            "/var/lib/ecr-login": directory_state(mode="0700"),
            LOGROTATE_PATH: file_state(mode="0644", sha256=rule_sha),
        },
    )
    facts["commands"] = [{"rc": 0, "stdout": "0.12.0\n"}]
    return facts


def test_an_up_to_date_host_needs_no_write(tmp_path: Path) -> None:
    binary = tmp_path / "helper"
    binary.write_bytes(b"\x7fELF helper")
    plan = install_plan("controller_file", architecture="x86_64", install_dir="/usr/local/bin", src=str(binary))
    logrotate = render_logrotate("/var/lib/ecr-login", "root", "root")
    todo = helper_changes(
        host_facts(binary, plan, logrotate), plan, cache_dir="/var/lib/ecr-login", cache_owner="root", logrotate=True
    )
    assert todo["version"] == "0.12.0"
    assert not any(todo[key] for key in ("install_dir", "binary", "cache_dir", "logrotate"))


def test_a_changed_source_or_a_missing_path_needs_writes(tmp_path: Path) -> None:
    binary = tmp_path / "helper"
    binary.write_bytes(b"one")
    plan = install_plan("controller_file", architecture="x86_64", install_dir="/usr/local/bin", src=str(binary))
    facts = host_facts(binary, plan, render_logrotate("/var/lib/ecr-login", "root", "root"))
    binary.write_bytes(b"two")
    facts["paths"]["/var/lib/ecr-login"] = MISSING
    todo = helper_changes(facts, plan, cache_dir="/var/lib/ecr-login", cache_owner="root", logrotate=True)
    assert todo["binary"]
    assert todo["cache_dir"]
    assert not todo["logrotate"]


def test_release_and_package_always_run_their_install_tasks(tmp_path: Path) -> None:
    for method in ("release", "package"):
        plan = install_plan(method, architecture="x86_64", install_dir="/usr/local/bin")
        todo = helper_changes(probe_result(), plan, cache_dir="", cache_owner="root", logrotate=True)
        assert todo["binary"]
        assert todo["logrotate_content"] == ""


def test_a_controller_file_with_another_sha256_is_refused(tmp_path: Path) -> None:
    binary = tmp_path / "helper"
    binary.write_bytes(b"one")
    plan = install_plan(
        "controller_file", architecture="x86_64", install_dir="/usr/local/bin", src=str(binary), sha256="0" * 64
    )
    with pytest.raises(EcrkitError, match="/usr/local/bin/docker-credential-ecr-login was left as it was"):
        helper_changes(probe_result(), plan, cache_dir="", cache_owner="root", logrotate=False)


def test_a_missing_cache_owner_is_named() -> None:
    plan = install_plan("release", architecture="x86_64", install_dir="/usr/local/bin")
    with pytest.raises(InputError, match="ecr_credential_helper_cache_owner: 'gitlab-runner'"):
        helper_changes(
            probe_result(users={"gitlab-runner": None}),
            plan,
            cache_dir="/var/lib/ecr-login",
            cache_owner="gitlab-runner",
            logrotate=True,
        )


def test_the_probe_script_reports_real_files_and_users(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "config.json").chmod(0o600)
    args = {
        "users": ["root", "no-such-user"],
        "paths": [str(tmp_path / "config.json"), str(tmp_path / "none")],
        "read": [str(tmp_path / "config.json")],
        "commands": [["sh", "-c", "echo 0.6.0"]],
    }
    done = subprocess.run(
        [sys.executable, str(PROBE)], input=json.dumps(args), capture_output=True, text=True, check=True
    )
    facts = json.loads(done.stdout)
    assert facts["changed"] is False
    assert facts["users"]["no-such-user"] is None
    assert facts["users"]["root"]["home"] == "/root"
    state = facts["paths"][str(tmp_path / "config.json")]
    assert (state["type"], state["mode"], state["sha256"]) == ("file", "0600", hashlib.sha256(b"{}").hexdigest())
    assert facts["paths"][str(tmp_path / "none")] == {"path": str(tmp_path / "none"), "exists": False}
    assert facts["contents"][str(tmp_path / "config.json")] == "e30="
    assert facts["commands"][0]["stdout"] == "0.6.0\n"
