"""Every wait of `ecrkit validate` is bounded and named: a helper that never answers, a host
whose SSH port accepts and stays silent (Ansible's ssh connection: OpenSSH's ConnectTimeout).
(tests/test_validate.py stops the stand-in's API for the whole path: SSH, the probe, the real
helper, the judge.)"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecrkit import probe
from ecrkit.checks import judge
from ecrkit.probe_facts import ConsumerFacts
from ecrkit.validate import SSH_TIMEOUT, Target, validate

REGISTRIES = [f"12345678901{n}.dkr.ecr.us-east-1.amazonaws.com" for n in range(5)]
# A helper whose API never answers: it starts, then waits (exec: the probe stops the process it started).
SILENT_HELPER = '#!/bin/sh\ncase "$1" in -v) echo 0.6.0 ;; *) exec sleep 600 ;; esac\n'


def test_a_consumers_live_calls_that_never_finish_take_one_timeout_each_phase_not_one_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """credsStore's list, then five gets: one after another they took six timeouts; now the
    gets run together, and each is named as ECR's silence."""
    monkeypatch.setattr(probe, "LIVE_TIMEOUT", 3)
    helper = tmp_path / "bin" / probe.HELPER
    helper.parent.mkdir()
    helper.write_text(SILENT_HELPER)
    helper.chmod(0o755)
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text('{"credsStore": "ecr-login"}')
    name = probe.user_name(os.geteuid())
    entry = probe.user_entry(name)
    assert entry is not None
    entry["groups"] = os.getgrouplist(name, entry["gid"])
    env = {"PATH": f"{helper.parent}:/usr/bin:/bin", "HOME": str(home), "AWS_REGION": "us-east-1"}
    facts: ConsumerFacts = {"kind": "user", "name": name, "found": True, "user": name, "env_source": "login"}
    started = time.monotonic()
    observed = probe.observe(facts, entry, env, REGISTRIES, None, [])
    took = time.monotonic() - started
    assert observed["list"]["timed_out"] == 3
    assert [g["timed_out"] for g in observed["gets"]] == [3] * len(REGISTRIES)
    assert [g["registry"] for g in observed["gets"]] == REGISTRIES  # in the order asked
    assert took < 4 * 3, f"{took:.1f} s: one after another would take {(1 + len(REGISTRIES)) * 3} s"
    errors = [f for f in judge({"consumers": [observed]}, REGISTRIES) if f.check in ("live list", "live get")]
    assert [(f.check, f.severity) for f in errors] == [("live get", "error")] * 5 + [("live list", "error")]
    assert all("ECR did not answer within 3 s" in f.evidence for f in errors)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never sends a byte (the kernel accepts them)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield int(server.getsockname()[1])


def test_a_host_that_accepts_and_never_sends_the_ssh_banner_is_named_within_the_bound(silent_port: int) -> None:
    started = time.monotonic()
    report = validate(Target("silent", connection="ssh", address="127.0.0.1", port=silent_port, user="root"))
    took = time.monotonic() - started
    assert not report.passed
    assert report.unreachable == (
        f"127.0.0.1 port {silent_port}: the host accepted the connection but never answered "
        f"(no SSH banner within {SSH_TIMEOUT} s)"
    )
    assert took < SSH_TIMEOUT + 15


def test_a_port_nothing_listens_on_is_named_at_once() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = int(free.getsockname()[1])  # bound, not listening: refused
        started = time.monotonic()
        report = validate(Target("gone", connection="ssh", address="127.0.0.1", port=port, user="root"))
    assert report.unreachable == f"connection refused: connect to host 127.0.0.1 port {port}: Connection refused"
    assert time.monotonic() - started < SSH_TIMEOUT
