"""`ecrkit validate` and playbooks/validate.yml against a host provisioned by site.yml.

The host is a systemd container reached over SSH (Ansible's ssh connection, for the validator
and the playbooks alike), with a stand-in gitlab-runner service and, emulated, what EC2 gives a host: keys
for the stand-in's API in every login's and the service's environment. Each negative control
breaks one thing, proves the validator names it, and puts it back.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ecrkit.probe import LIVE_TIMEOUT
from ecrkit.validate import SSH_TIMEOUT
from testbed.hosts import (
    Host,
    ansible_playbook,
    give_stand_in_role,
    podman,
    remove_hosts,
    start_ssh_hosts,
    write_inventory,
)
from testbed.standin import REGISTRY_HOST, TOKEN_PASSWORD, StandIn
from tests.conftest import run_ecrkit

pytestmark = [pytest.mark.hosts, pytest.mark.standin]
SERVICE = "gitlab-runner"
AGENT = "dcos-mesos-slave"
TASKS = f"tasks of {AGENT}"
CONFIG_TOML = "/etc/gitlab-runner/config.toml"
OTHER_ACCOUNT = "999999999999.dkr.ecr.us-east-1.amazonaws.com"
VARIABLES: dict[str, object] = {
    "ecr_credential_helper_install_method": "controller_file",
    "ecr_credential_helper_src": "/usr/bin/docker-credential-ecr-login",
    "docker_auth_config_registries": [REGISTRY_HOST],
    "ecrkit_services": [SERVICE],
}


@pytest.fixture(scope="module")
def host(stand_in: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Host, Path]]:
    """The provisioned host and an inventory that reaches it over SSH."""
    work = tmp_path_factory.mktemp("validate")
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    hosts = start_ssh_hosts(
        [f"ecrkit-pytest-validate-{os.getpid()}"], key.with_suffix(".pub"), 22101, stand_in.host_options()
    )
    try:
        give_stand_in_role(hosts[0], stand_in, [SERVICE, AGENT])
        # A runner manager that is also a Marathon agent: each consumer judged as it reads credentials.
        inventory = write_inventory(
            work / "hosts.yml", {"gitlab_runners": hosts, "marathon_agents": hosts}, VARIABLES, key
        )
        result = ansible_playbook("-i", str(inventory), "site.yml")
        assert result.returncode == 0, result.stdout[-3000:]
        yield hosts[0], inventory
    finally:
        remove_hosts(hosts)


def validate(inventory: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = run_ecrkit("validate", "-i", str(inventory), "--json", *args)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def forget_tokens(machine: Host) -> None:
    """Empty root's token caches: its own, and the one the service's drop-in names."""
    machine.run("rm -rf /root/.ecr /var/lib/ecr-login/cache.json /var/lib/ecr-login/log")


def failures(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (f["subject"], f["check"], f["evidence"])
        for h in report["hosts"]
        for f in h["findings"]
        if f["severity"] == "error"
    ]


def test_a_provisioned_host_passes_every_check_with_a_live_token(host: tuple[Host, Path]) -> None:
    _, inventory = host
    done = run_ecrkit("validate", "-i", str(inventory))
    assert done.returncode == 0, done.stdout
    assert "1 of 1 hosts pass" in done.stdout
    code, report = validate(inventory)
    assert code == 0 and report["passed"]
    gets = [f for f in report["hosts"][0]["findings"] if f["check"] == "live get"]
    assert [(g["subject"], g["severity"]) for g in gets] == [
        (f"service {SERVICE}", "ok"),
        ("user root", "ok"),
        (TASKS, "ok"),
    ]
    runner = [(f["severity"], f["evidence"]) for f in report["hosts"][0]["findings"] if f["check"].startswith("runner")]
    assert runner == [("ok", f"{REGISTRY_HOST}: DOCKER_AUTH_CONFIG (credHelpers), through the live get")]
    assert f"a secret of {len(TOKEN_PASSWORD)} characters" in gets[0]["evidence"]
    # The token, the keys in the service's environment and the runner's token in config.toml never leave the host.
    for secret in (TOKEN_PASSWORD, "stand-in-secret", "glrt-stand-in-token"):
        assert secret not in done.stdout + json.dumps(report)


def test_an_api_that_refuses_is_named_as_the_cause(host: tuple[Host, Path], stand_in: StandIn) -> None:
    machine, inventory = host
    forget_tokens(machine)  # else the helper uses its cached token
    stand_in.refuse("AccessDeniedException")
    try:
        code, report = validate(inventory)
    finally:
        stand_in.refuse(None)
    assert code == 1 and not report["passed"]
    errors = [f for f in report["hosts"][0]["findings"] if f["severity"] == "error"]
    gets = [f for f in errors if f["check"] == "live get"]
    assert {f["subject"] for f in gets} == {f"service {SERVICE}", "user root", TASKS}
    assert all("AccessDeniedException" in f["evidence"] and "ecr:GetAuthorizationToken" in f["fix"] for f in gets)
    # The runner drops its DOCKER_AUTH_CONFIG when the helper fails, and root's config.json too.
    [runner] = [f for f in errors if f["check"] != "live get"]
    assert runner["check"].startswith("runner ") and "no source gives it credentials" in runner["evidence"]
    # Working again, it passes; the refusals stay in the log as recent warnings.
    code, report = validate(inventory)
    assert code == 0
    warnings = {f["check"] for f in report["hosts"][0]["findings"] if f["severity"] == "warning"}
    assert warnings == {"helper log: access denied"}
    forget_tokens(machine)


def test_the_service_environment_is_what_is_judged(host: tuple[Host, Path]) -> None:
    """A drop-in that hides the helper from the service's PATH fails only the service, and
    only once the service runs with it; until then the validator asks for a restart."""
    machine, inventory = host
    dropin = f"/etc/systemd/system/{SERVICE}.service.d/test-path.conf"
    machine.run("mkdir -p /opt/ecr && cp /usr/local/bin/docker-credential-ecr-login /opt/ecr/ecr-login-linux-amd64")
    machine.run("ln -sf /opt/ecr/ecr-login-linux-amd64 /opt/ecr/docker-credential-ecr-login-linux-amd64")
    machine.run(
        f"printf '[Service]\\nEnvironment=PATH=/usr/sbin:/sbin:/opt/ecr\\n' > {dropin} && systemctl daemon-reload"
    )
    try:
        code, report = validate(inventory)
        assert code == 0
        stale = [f for f in report["hosts"][0]["findings"] if f["check"] == "environment current"]
        assert [f["fix"] for f in stale] == [f"systemctl restart {SERVICE}"]
        machine.run(f"systemctl restart {SERVICE}")
        code, report = validate(inventory)
        assert code == 1
        assert len(failures(report)) == 2, [f[:2] for f in failures(report)]
        [on_path, runner] = failures(report)
        assert on_path == (
            f"service {SERVICE}",
            "helper on PATH",
            "no docker-credential-ecr-login on PATH=/usr/sbin:/sbin:/opt/ecr, "
            "but /opt/ecr/docker-credential-ecr-login-linux-amd64",
        )
        assert "the runner cannot run docker-credential-ecr-login" in runner[2]
    finally:
        machine.run(f"rm -rf {dropin} /opt/ecr && systemctl daemon-reload && systemctl restart {SERVICE}")
    assert validate(inventory)[0] == 0


def test_creds_store_needs_the_region_that_ecrkit_gives_the_service(host: tuple[Host, Path]) -> None:
    """A hand-written credsStore config on a manager without ecrkit's drop-in fails the
    service; applying site.yml again puts the drop-in back, and it passes."""
    machine, inventory = host
    before = machine.read("/root/.docker/config.json")
    ecrkit_dropin = f"/etc/systemd/system/{SERVICE}.service.d/ecrkit.conf"
    machine.run("""printf '{"credsStore": "ecr-login"}' > /root/.docker/config.json""")
    machine.run(f"rm {ecrkit_dropin} && systemctl daemon-reload && systemctl restart {SERVICE}")
    forget_tokens(machine)  # a fresh host: `list` also returns what the cache holds
    try:
        code, report = validate(inventory)
        assert code == 1
        # The service fails twice: by its environment, and by the helper's own `list` coming back empty.
        # So does root's login's `list` (no region in /etc/environment): a failed list fails every consumer.
        [region, listed, logins] = failures(report)
        assert region[:2] == (f"service {SERVICE}", "region for credsStore")
        assert listed[:2] == (f"service {SERVICE}", "live list") and "an AWS region is required" in listed[2]
        assert logins[:2] == ("user root", "live list") and "an AWS region is required" in logins[2]
        result = ansible_playbook("-i", str(inventory), "site.yml")
        assert result.returncode == 0, result.stdout[-3000:]
        assert machine.exists(ecrkit_dropin)
        # The service passes again. site.yml keeps root's hand-written credsStore (it merges), and gives
        # AWS_REGION to services, not to logins: root's login still lists nothing.
        code, report = validate(inventory)
        assert [(s, c) for s, c, _ in failures(report)] == [("user root", "live list")]
    finally:
        machine.run(f"echo {base64.b64encode(before.encode()).decode()} | base64 -d > /root/.docker/config.json")
    assert validate(inventory)[0] == 0


def test_a_cache_directory_the_user_cannot_write_is_reported(host: tuple[Host, Path]) -> None:
    """A user whose AWS_ECR_CACHE_DIR is root's 0700 directory: the pull works, but every pull
    asks ECR for a token (bench/token_economy.py measures what that costs)."""
    machine, inventory = host
    machine.run("useradd -m builder && mkdir -p -m 0700 /var/lib/ecr-login")
    machine.run("cp -r /root/.docker /home/builder/ && chown -R builder: /home/builder/.docker")
    machine.run("echo AWS_ECR_CACHE_DIR=/var/lib/ecr-login >> /etc/environment")
    try:
        code, report = validate(inventory, "--user", "builder")
        assert code == 1
        [(subject, check, evidence)] = failures(report)
        assert (subject, check) == ("user builder", "token cache")
        assert "/var/lib/ecr-login is not writable by builder" in evidence
        builder = {f["check"]: f["severity"] for f in report["hosts"][0]["findings"] if f["subject"] == "user builder"}
        assert builder["live get"] == "ok"  # the pull itself works; only the cache is lost
    finally:
        machine.run("sed -i /AWS_ECR_CACHE_DIR/d /etc/environment && userdel -r builder")


def test_the_playbook_runs_the_same_checks(host: tuple[Host, Path], stand_in: StandIn) -> None:
    machine, inventory = host
    result = ansible_playbook("-i", str(inventory), "playbooks/validate.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"OK | service {SERVICE} | live get | {REGISTRY_HOST}: username AWS" in " ".join(result.stdout.split())
    forget_tokens(machine)
    stand_in.refuse("ThrottlingException")
    try:
        result = ansible_playbook("-i", str(inventory), "playbooks/validate.yml")
    finally:
        stand_in.refuse(None)
        forget_tokens(machine)
    assert result.returncode != 0
    assert "failed=1" in result.stdout and "ThrottlingException" in result.stdout


def test_a_user_other_than_root_probes_through_sudo(host: tuple[Host, Path], tmp_path: Path) -> None:
    machine, inventory = host
    machine.run("useradd -m deploy && install -d -o deploy -m 0700 /home/deploy/.ssh")
    machine.run("cp /root/.ssh/authorized_keys /home/deploy/.ssh/ && chown deploy /home/deploy/.ssh/authorized_keys")
    machine.run("echo 'deploy ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deploy")
    hosts = json.loads(inventory.read_text())
    for group in hosts["all"]["children"].values():  # the host is in two groups: each sets its connection
        for variables in group["hosts"].values():
            variables["ansible_user"] = "deploy"
    as_deploy = tmp_path / "deploy.yml"
    as_deploy.write_text(json.dumps(hosts))
    try:
        code, report = validate(as_deploy)
        assert code == 0, failures(report)
        machine.run("rm /etc/sudoers.d/deploy")  # without sudo the probe cannot act as root
        code, report = validate(as_deploy)
        assert code == 1 and report["hosts"][0]["unreachable"] == (
            "become needs a password and none was given (ansible_become_password): Missing sudo password"
        )
    finally:
        machine.run("rm -f /etc/sudoers.d/deploy; userdel -r deploy")


def test_an_unreachable_host_is_reported_and_the_others_are_still_judged(
    host: tuple[Host, Path], tmp_path: Path
) -> None:
    _, inventory = host
    hosts = json.loads(inventory.read_text())
    group = hosts["all"]["children"]["gitlab_runners"]["hosts"]
    group["gone"] = {**next(iter(group.values())), "ansible_port": 22199}  # nothing listens there
    both = tmp_path / "both.yml"
    both.write_text(json.dumps(hosts))
    code, report = validate(both)
    assert code == 1
    by_host = {h["host"]: h for h in report["hosts"]}
    assert (
        by_host["gone"]["unreachable"] == "connection refused: connect to host 127.0.0.1 port 22199: Connection refused"
    )
    assert not by_host["gone"]["passed"]
    assert [h["passed"] for name, h in by_host.items() if name != "gone"] == [True]


# Replaces config.toml's `environment` line with $LINE (a TOML array), as a person editing it would.
EDIT_ENVIRONMENT = (
    "import os, re, sys; p = sys.argv[1]; t = open(p).read(); "
    "open(p, 'w').write(re.sub(r'(?m)^  environment = .*', lambda m: '  environment = ' + os.environ['LINE'], t))"
)


def runner_auth(machine: Host, auth: str) -> None:
    """Set the runner's DOCKER_AUTH_CONFIG in config.toml to `auth` (JSON text, escaped as TOML needs)."""
    line = json.dumps([f"DOCKER_AUTH_CONFIG={auth}"])  # JSON's escapes are TOML's
    done = machine.run(f'python3 -c "{EDIT_ENVIRONMENT}" {CONFIG_TOML}', env={"LINE": line})
    assert done.returncode == 0 and auth in machine.read(CONFIG_TOML).replace('\\"', '"'), done.stderr


def runner_verdicts(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["severity"], f["evidence"]) for f in report["hosts"][0]["findings"] if f["check"].startswith("runner ")]


@pytest.fixture
def saved(host: tuple[Host, Path]) -> Iterator[Host]:
    """The host, with config.toml, root's config.json, the agent's archive and /etc/environment put back after."""
    machine = host[0]
    kept = ("/etc/gitlab-runner/config.toml", "/root/.docker/config.json", "/etc/docker.tar.gz", "/etc/environment")
    machine.run(" && ".join(f"cp -p {path} {path}.saved" for path in kept))
    try:
        yield machine
    finally:
        machine.run("; ".join(f"mv -f {path}.saved {path}" for path in kept))


def test_the_runner_is_judged_by_its_config_toml_not_by_roots_config_json(host: tuple[Host, Path], saved: Host) -> None:
    _, inventory = host
    # Invalid JSON in DOCKER_AUTH_CONFIG fails, though root's config.json covers the registry.
    runner_auth(saved, f'{{"credHelpers": {{"{REGISTRY_HOST}": "ecr-login",}}}}')
    code, report = validate(inventory)
    assert code == 1
    [(_, evidence)] = [v for v in runner_verdicts(report) if v[0] == "error"]
    assert "DOCKER_AUTH_CONFIG in config.toml is not valid JSON (Expecting" in evidence
    # Naming another account: the runner resolves the registry from root's config.json, and says so.
    runner_auth(saved, json.dumps({"credHelpers": {OTHER_ACCOUNT: "ecr-login"}}))
    code, report = validate(inventory)
    assert code == 0
    assert runner_verdicts(report)[0] == (
        "ok",
        f"{REGISTRY_HOST}: /root/.docker/config.json (credHelpers), through the live get",
    )
    assert runner_verdicts(report)[1][0] == "warning"
    # ... and with root's config.json gone, nothing covers it, whatever root's user would get.
    saved.run("rm /root/.docker/config.json")
    code, report = validate(inventory, "--user", "nobody")
    assert code == 1
    assert [e for s, e in runner_verdicts(report) if s == "error"] == [
        f"{REGISTRY_HOST}: no source gives it credentials (DOCKER_AUTH_CONFIG does not name it): "
        "the runner pulls anonymously"
    ]


def test_a_runner_whose_config_toml_is_right_passes_without_roots_config_json(
    host: tuple[Host, Path], saved: Host
) -> None:
    _, inventory = host
    saved.run("rm /root/.docker/config.json")
    code, report = validate(inventory)
    assert code == 1  # root's own pulls fail: it is a consumer of its own
    assert {s for s, _, _ in failures(report)} == {"user root"}
    service = {
        f["check"]: f["severity"] for f in report["hosts"][0]["findings"] if f["subject"] == f"service {SERVICE}"
    }
    assert service["config.json"] == "note" and "error" not in service.values()


def test_creds_store_in_docker_auth_config_needs_the_region_in_the_service(
    host: tuple[Host, Path], saved: Host
) -> None:
    _, inventory = host
    forget_tokens(saved)  # `list` returns what the cache holds
    runner_auth(saved, '{"credsStore": "ecr-login"}')
    dropin = f"/etc/systemd/system/{SERVICE}.service.d/ecrkit.conf"
    saved.run(f"mv {dropin} /root/ecrkit.conf && systemctl daemon-reload && systemctl restart {SERVICE}")
    try:
        code, report = validate(inventory)
        assert code == 1
        service = [c for s, c, _ in failures(report) if s == f"service {SERVICE}"]
        assert service == ["region for credsStore", "live list"], failures(report)
        # The runner passes the registry over to root's config.json, and says why.
        assert (
            "warning",
            f"{REGISTRY_HOST}: DOCKER_AUTH_CONFIG's credsStore does not list it, so the runner "
            "falls back to /root/.docker/config.json",
        ) in runner_verdicts(report)
    finally:
        saved.run(f"mv /root/ecrkit.conf {dropin} && systemctl daemon-reload && systemctl restart {SERVICE}")
        forget_tokens(saved)


def test_the_agents_tasks_are_judged_by_the_archive_they_fetch(host: tuple[Host, Path], saved: Host) -> None:
    machine, inventory = host
    for broken, expected in [
        ("rm /etc/docker.tar.gz", "/etc/docker.tar.gz does not exist"),
        ("echo corrupt > /etc/docker.tar.gz", "cannot be extracted as nobody"),
        ("chmod 0600 /etc/docker.tar.gz", "Permission denied"),
    ]:
        machine.run(f"cp -p /etc/docker.tar.gz.saved /etc/docker.tar.gz && {broken}")
        code, report = validate(inventory)
        assert code == 1, broken
        assert [(s, c) for s, c, _ in failures(report)] == [(TASKS, "docker.tar.gz")], broken
        assert expected in failures(report)[0][2], broken
    # An archive naming another account's registry: the task's config.json does not cover ours.
    other = f'{{"credHelpers": {{"{OTHER_ACCOUNT}": "ecr-login"}}}}'
    machine.run(
        f"rm -rf /tmp/a && mkdir -p /tmp/a/.docker && printf '%s' '{other}' > /tmp/a/.docker/config.json"
        " && tar -C /tmp/a -czf /etc/docker.tar.gz .docker && chmod 0644 /etc/docker.tar.gz && rm -rf /tmp/a"
    )
    code, report = validate(inventory)
    assert code == 1
    [(subject, check, evidence)] = failures(report)
    assert (subject, check) == (TASKS, "covers registry") and REGISTRY_HOST in evidence
    # Nothing is left behind: every sandbox the probe made is gone.
    assert machine.run("ls -d /tmp/ecrkit-sandbox-* 2>/dev/null").stdout == ""


def test_a_hung_api_is_named_within_a_bound_and_no_consumer_passes(
    host: tuple[Host, Path], saved: Host, stand_in: StandIn
) -> None:
    """The stand-in's API stopped (SIGSTOP): connections are accepted and never answered, and
    Debian's helper retries its TLS handshake for about 33 s per call. With root's config.json
    on credsStore, the service and root's login each `list`, and the service, root and the
    agent's tasks each `get`: one after another that took minutes, and a login's failed list
    passed as a warning."""
    _, inventory = host
    assert saved.run("test -e /root/.aws").returncode != 0  # nothing of the host's own to put back
    saved.run("""printf '{"credsStore": "ecr-login"}' > /root/.docker/config.json""")
    saved.run("mkdir /root/.aws && printf '[default]\\nregion = us-east-1\\n' > /root/.aws/config")
    forget_tokens(saved)  # else `get` and `list` answer from the cache
    api = int((stand_in.state / "pids" / "api").read_text())
    os.killpg(api, signal.SIGSTOP)
    try:
        started = time.monotonic()
        code, report = validate(inventory)
        took = time.monotonic() - started
    finally:
        os.killpg(api, signal.SIGCONT)
        saved.run("rm -rf /root/.aws && cp -p /root/.docker/config.json.saved /root/.docker/config.json")
        forget_tokens(saved)
    # The lists, then the gets, each run together and stopped after LIVE_TIMEOUT; the rest is SSH and the probe.
    assert took < 2 * LIVE_TIMEOUT + SSH_TIMEOUT + 30, f"{took:.0f} s"
    assert code == 1 and not report["passed"] and not report["hosts"][0]["passed"]
    live = [f for f in report["hosts"][0]["findings"] if f["check"] in ("live get", "live list")]
    assert sorted((f["subject"], f["check"], f["severity"]) for f in live) == [
        (f"service {SERVICE}", "live get", "error"),
        (f"service {SERVICE}", "live list", "error"),
        (TASKS, "live get", "error"),
        ("user root", "live get", "error"),
        ("user root", "live list", "error"),
    ]
    assert all(f"ECR did not answer within {LIVE_TIMEOUT} s" in f["evidence"] for f in live), live
    assert validate(inventory)[0] == 0  # the API answers again


def test_an_expired_sso_session_is_named_with_its_fix(
    host: tuple[Host, Path], saved: Host, stand_in: StandIn, tmp_path: Path
) -> None:
    """A person's workstation login: no keys in the environment, an IAM Identity Center profile
    whose cached token has expired. The stand-in's portal never sees a request: the SDK refuses."""
    _, inventory = host
    start_url = "https://d-standin01.awsapps.com/start"
    profile = f"[default]\nsso_start_url = {start_url}\nsso_region = us-east-1\nsso_account_id = 123456789012\n"
    profile += "sso_role_name = ECRPull\nregion = us-east-1\n"
    saved.run("sed -i '/AWS_ACCESS_KEY_ID/d; /AWS_SECRET_ACCESS_KEY/d' /etc/environment && useradd -m dev")
    saved.run(f"mkdir -p /home/dev/.aws/sso/cache && printf '{profile}' > /home/dev/.aws/config")
    saved.run("cp -r /root/.docker /home/dev/ && chown -R dev: /home/dev")
    requests = len(stand_in.sso_requests())
    try:
        for valid_for in (-600, 3600):
            token = stand_in.sso_login(tmp_path, start_url, start_url, "us-east-1", valid_for=valid_for)
            podman("cp", str(token), f"{saved.name}:/home/dev/.aws/sso/cache/{token.name}")
            saved.run("chown -R dev: /home/dev/.aws")
            code, report = validate(inventory, "--user", "dev")
            assert "stand-in-sso-token" not in json.dumps(report)  # the cached token stays on the host
            dev = {f["check"]: f for f in report["hosts"][0]["findings"] if f["subject"] == "user dev"}
            if valid_for < 0:
                assert code == 1 and len(stand_in.sso_requests()) == requests
                assert "the IAM Identity Center session expired at" in dev["SSO session"]["evidence"]
                assert dev["SSO session"]["fix"] == dev["live get"]["fix"] == "aws sso login --profile default"
            else:  # the same check passes once the person has logged in again
                assert dev["SSO session"]["severity"] == dev["live get"]["severity"] == "ok", dev
                assert len(stand_in.sso_requests()) > requests
    finally:
        saved.run("userdel -r dev")
