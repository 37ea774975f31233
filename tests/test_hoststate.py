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
from ecrkit.hoststate import differs, helper_changes, service_due
from ecrkit.probe_facts import ProbeResult
from ecrkit.renderers.logrotate import render as render_logrotate
from tests.facts import MISSING, NO_SERVICE, directory_state, file_state, probe_result, service, user

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


# What a service needs so that its process has what is on disk (service_due), from the running
# service: the fault a converge killed between its write and its handler's restart leaves.
NEW = {"AWS_REGION": "eu-west-1"}
OLD = {"AWS_REGION": "us-east-1"}


def test_a_drop_in_a_killed_run_wrote_gets_its_reload_and_restart() -> None:
    state = service(need_daemon_reload=True, unit_env=OLD, process_env=OLD)
    due = service_due("gitlab-runner", state, NEW, written=False, unit_file=True)
    assert due["daemon_reload"] is True and due["restart"] is True
    assert due["why"] == [
        "gitlab-runner: systemd has not loaded its changed unit files (NeedDaemonReload)",
        "gitlab-runner runs with AWS_REGION=us-east-1, a new start gets eu-west-1",
    ]


def test_a_process_older_than_its_reloaded_unit_is_restarted() -> None:
    # Something else reloaded systemd after the kill: only the process tells.
    state = service(unit_env=NEW, process_env=OLD)
    due = service_due("gitlab-runner", state, NEW, written=False, unit_file=True)
    assert (due["daemon_reload"], due["restart"]) == (False, True)


def test_a_stopped_service_is_reloaded_and_not_started() -> None:
    state = service(active=False, need_daemon_reload=True, unit_env=OLD)
    due = service_due("gitlab-runner", state, NEW, written=False, unit_file=True)
    assert (due["daemon_reload"], due["restart"]) == (True, False)
    written = service_due("gitlab-runner", service(active=False, unit_env=OLD), NEW, written=True, unit_file=True)
    assert (written["daemon_reload"], written["restart"]) == (True, False)


def test_a_service_as_its_unit_says_needs_nothing() -> None:
    # PATH: the process has systemd's, the unit sets none; no key the unit does not set is compared.
    state = service(unit_env=NEW, process_env={**NEW, "PATH": "/usr/bin"})
    due = service_due("gitlab-runner", state, NEW, written=False, unit_file=True)
    assert due == {"daemon_reload": False, "restart": False, "why": []}


def test_another_drop_in_that_overrides_ours_restarts_nothing_for_ever() -> None:
    # A later drop-in sets another region: the process has what the unit gives it, not ours.
    state = service(unit_env={"AWS_REGION": "ap-south-1"}, process_env={"AWS_REGION": "ap-south-1"})
    due = service_due("gitlab-runner", state, NEW, written=False, unit_file=True)
    assert due["restart"] is False


def test_a_write_that_changes_no_value_reloads_without_a_restart() -> None:
    due = service_due("gitlab-runner", service(unit_env=NEW, process_env=NEW), NEW, written=True, unit_file=True)
    assert (due["daemon_reload"], due["restart"]) == (True, False)


def test_an_env_file_is_judged_from_the_file_the_unit_reads() -> None:
    # An EnvironmentFile is read at each start: no reload; a stale process is restarted.
    state = service(need_daemon_reload=False, unit_env=NEW, process_env=OLD)
    due = service_due("dcos-mesos-slave", state, NEW, written=False, unit_file=False)
    assert (due["daemon_reload"], due["restart"]) == (False, True)
    # Its unit's own changes are not ecrkit's to load, unless it restarts: then first.
    pending = service(need_daemon_reload=True, unit_env=NEW, process_env=NEW)
    due = service_due("dcos-mesos-slave", pending, NEW, written=False, unit_file=False)
    assert due == {"daemon_reload": False, "restart": False, "why": []}
    both = service(need_daemon_reload=True, unit_env=NEW, process_env=OLD)
    due = service_due("dcos-mesos-slave", both, NEW, written=False, unit_file=False)
    assert (due["daemon_reload"], due["restart"]) == (True, True)


def test_unknown_process_environments_restart_on_a_change_only() -> None:
    unreadable = service(unit_env=OLD)
    unreadable["process_env"] = None
    assert service_due("gitlab-runner", unreadable, NEW, written=False, unit_file=True)["restart"] is False
    assert service_due("gitlab-runner", unreadable, NEW, written=True, unit_file=True)["restart"] is True
    # Not probed at all (the CLI): a write restarts, as it always did.
    assert service_due("gitlab-runner", None, NEW, written=True, unit_file=True)["restart"] is True
    assert service_due("gitlab-runner", NO_SERVICE, NEW, written=True, unit_file=True)["restart"] is False
