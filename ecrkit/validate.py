"""`ecrkit validate`: run the probe on hosts (locally, through podman, or over SSH with
paramiko), judge the facts, and report. Many hosts are probed in parallel; a host that
cannot be reached is reported, never fatal.

What each host is expected to have comes from its Ansible variables (an inventory, read by
`ansible-inventory` with the roles' defaults underneath) or from the command line.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import paramiko
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ecrkit import plans
from ecrkit.checks import Finding, judge, probe_args
from ecrkit.constants import role_default
from ecrkit.errors import EcrkitError, InputError
from ecrkit.output import fits
from ecrkit.probe import ProbeResult
from ecrkit.settings import CredentialRule, validate_port

PROBE = Path(__file__).with_name("probe.py")  # plugins/modules/probe.py, the module ecrkit.ecr.probe
# docker_auth_config's variables, whose defaults (ecrkit.constants) lie under a host's own.
RULE_VARIABLES = (
    "docker_auth_config_users", "docker_auth_config_registries", "docker_auth_config_public",
    "docker_auth_config_creds_store",
)  # fmt: skip
RUNNER_GROUP, AGENT_GROUP = "gitlab_runners", "marathon_agents"  # playbooks/gitlab_runners.yml, marathon_agents.yml
MARKER = "<<INCLUDE_ANSIBLE_MODULE_JSON_ARGS>>"  # where Ansible, and we, put the probe's arguments
PODMAN = "containers.podman.podman"
# Every wait is bounded, and a timeout is named. Over SSH: seconds to connect, then for the
# host's SSH banner, then for the key exchange, then to authenticate. The probe bounds its own
# live calls (its LIVE_TIMEOUT: a host's take at most twice that); PROBE_TIMEOUT only catches a
# probe that hangs elsewhere.
SSH_TIMEOUT = 15
PROBE_TIMEOUT = 300


@dataclass
class Target:
    """A host to probe and what it should have."""

    name: str
    connection: str = "local"  # local, podman or ssh
    address: str = ""
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    strict_host_keys: bool = True
    python: str = "python3"
    registries: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    runners: dict[str, str] = field(default_factory=dict)  # GitLab Runner units -> config.toml ("": found)
    tasks: list[dict[str, str]] = field(default_factory=list)  # Mesos agents whose tasks fetch an archive


@dataclass
class Report:
    host: str
    findings: list[Finding] = field(default_factory=list)
    unreachable: str | None = None  # why the probe could not run

    @property
    def passed(self) -> bool:
        return self.unreachable is None and all(f.severity != "error" for f in self.findings)


def probe_script(args: dict[str, Any]) -> str:
    """The probe with its arguments embedded, exactly as Ansible ships it to a host."""
    return PROBE.read_text().replace(MARKER, json.dumps(args), 1)


def run_probe(target: Target) -> ProbeResult:
    """The probe's facts from the target; raises OSError when the host cannot be reached."""
    script = probe_script(probe_args(target.registries, target.services, target.users, target.runners, target.tasks))
    if target.connection == "ssh":
        return json.loads(_over_ssh(target, script))  # type: ignore[no-any-return]
    argv = [target.python, "-"]
    if target.connection == "podman":
        argv = ["podman", "exec", "-i", target.address or target.name, *argv]
    try:
        done = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OSError(f"the probe did not finish in {PROBE_TIMEOUT} s") from exc
    if done.returncode != 0:
        raise OSError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _ssh_socket(address: str, port: int) -> socket.socket:
    """A connection to the host's SSH server that has sent its banner: each wait bounded by
    SSH_TIMEOUT and named when it runs out (paramiko only says `No existing session` then)."""
    where = f"{address} port {port}"
    try:
        sock = socket.create_connection((address, port), timeout=SSH_TIMEOUT)
    except TimeoutError:
        raise OSError(f"cannot connect to {where}: no answer within {SSH_TIMEOUT} s") from None
    except OSError as exc:
        raise OSError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    try:
        if not sock.recv(1, socket.MSG_PEEK):  # the banner stays for paramiko to read
            raise OSError(f"{where}: the host closed the connection without an SSH banner")
    except TimeoutError:
        sock.close()
        raise OSError(
            f"{where}: the host accepted the connection but never answered (no SSH banner within {SSH_TIMEOUT} s)"
        ) from None
    except OSError:
        sock.close()
        raise
    return sock


def _over_ssh(target: Target, script: str) -> str:
    address = target.address or target.name
    sock = _ssh_socket(address, target.port)
    client = paramiko.SSHClient()
    client.load_system_host_keys()
    client.set_missing_host_key_policy(paramiko.RejectPolicy() if target.strict_host_keys else paramiko.AutoAddPolicy())
    try:
        client.connect(
            address,
            port=target.port,
            username=target.user,
            key_filename=target.key_file,
            sock=sock,
            # The key exchange's wait: past the banner's, so that paramiko names a banner it cannot read.
            timeout=2 * SSH_TIMEOUT,
            banner_timeout=SSH_TIMEOUT,
            auth_timeout=SSH_TIMEOUT,
        )
        # The probe acts as each consumer's user, so it runs as root (sudo without a password).
        command = shlex.quote(target.python) + " -"
        if target.user not in (None, "root"):
            command = "sudo -n " + command
        stdin, stdout, stderr = client.exec_command(command, timeout=PROBE_TIMEOUT)
        stdin.write(script)
        stdin.channel.shutdown_write()
        output = stdout.read().decode()
        if stdout.channel.recv_exit_status() != 0:
            message = stderr.read().decode().strip()
            raise OSError(message.splitlines()[-1] if message else "the probe failed")
        return output
    except paramiko.SSHException as exc:
        transport = client.get_transport()
        cause = transport.get_exception() if transport is not None else None  # what its thread met, if anything
        if cause is None and str(exc) == "No existing session":  # paramiko's word for a key exchange still going
            raise OSError(f"{address} port {target.port}: the SSH key exchange did not finish within "
                          f"{2 * SSH_TIMEOUT} s") from exc  # fmt: skip
        raise OSError(str(cause or exc) or type(cause or exc).__name__) from exc
    except EOFError as exc:  # paramiko's, from the key exchange: the host hung up, or its 15 s handshake ran out
        raise OSError(f"{address} port {target.port}: the SSH key exchange failed: the host closed the connection, "
                      "or stopped answering") from exc  # fmt: skip
    except TimeoutError as exc:  # the channel's: the probe itself did not finish
        raise OSError(f"the probe did not finish in {PROBE_TIMEOUT} s") from exc
    finally:
        client.close()
        sock.close()


def validate(target: Target) -> Report:
    try:
        facts = run_probe(target)
    except (OSError, ValueError) as exc:
        return Report(target.name, unreachable=str(exc) or type(exc).__name__)
    return Report(target.name, judge(facts, target.registries))


def validate_all(targets: Sequence[Target], progress: Callable[[Report], None] = lambda _: None) -> list[Report]:
    """Probe every target in parallel; reports in the targets' order."""
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(targets)))) as pool:
        futures = [pool.submit(validate, target) for target in targets]
        for future in as_completed(futures):
            progress(future.result())
        return [future.result() for future in futures]


# -- what each host should have --------------------------------------------------------------


def special_consumers(
    variables: Mapping[str, Any], groups: Iterable[str]
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The consumers a host's groups add, judged as their real consumer reads its credentials:
    a runner manager's service through config.toml (the path given, else the probe finds it),
    and a Marathon agent's tasks through the archive they fetch (as ecrkit_task_user)."""
    groups = set(groups)
    runners: dict[str, str] = {}
    tasks: list[dict[str, str]] = []
    if RUNNER_GROUP in groups and not variables.get("gitlab_runner_ecr_container"):  # a container has no unit
        service = _variable(variables, "gitlab_runner_ecr_service")
        runners[service] = str(variables.get("gitlab_runner_ecr_config_path") or "")
    if AGENT_GROUP in groups:
        tasks.append({
            "task": _variable(variables, "marathon_agent_ecr_service"),
            "archive": _variable(variables, "marathon_agent_ecr_docker_tar_path"),
            "task_user": str(variables.get("ecrkit_task_user") or role_default("ecrkit_task_user")),
        })  # fmt: skip
    return runners, tasks


def _variable(variables: Mapping[str, Any], name: str) -> str:
    """A plain-string variable, with the role's default underneath."""
    value = variables.get(name)
    if value is None:
        value = role_default(name)
    if not isinstance(value, str) or not value:
        raise InputError(name, value, "a non-empty string")
    return value


def expected(variables: dict[str, Any], source: str) -> tuple[list[str], list[str], list[str]]:
    """Registries, services and users from a host's variables, with the roles' defaults underneath."""
    merged = {**{name: role_default(name) for name in RULE_VARIABLES}, **variables}
    prefix = "docker_auth_config_"
    rule = plans.credential_rule(
        {key: merged[prefix + key] for key in ("registries", "public", "creds_store")},
        lambda key: f"{source}: {prefix}{key}",
    )
    services = merged.get("ecrkit_services") or []
    if not isinstance(services, list) or not all(isinstance(s, str) and s for s in services):
        raise InputError(f"{source}: ecrkit_services", services, "a list of systemd unit names")
    return list(rule.registries), services, list(merged["docker_auth_config_users"])


ACCOUNT_GROUP = "ecr_accounts"  # playbooks/ecr.yml's group
GROUPS_GROUP = "autoscaling_groups"  # playbooks/autoscaling_groups.yml's: Auto Scaling groups, driven through the API


def _ansible_inventory() -> str:
    """Ansible's inventory reader: next to this Python (one virtualenv), else on the PATH."""
    beside = Path(sys.executable).with_name("ansible-inventory")
    found = str(beside) if beside.is_file() else shutil.which("ansible-inventory")
    if not found:
        raise EcrkitError(
            "-i: reading an Ansible inventory needs ansible-inventory, found neither next to "
            f"{sys.executable} nor on the PATH: pip install ansible-core (or ansible) there"
        )
    return found


def inventory_targets(inventory: str, patterns: Iterable[str]) -> list[Target]:
    """The hosts of an Ansible inventory (all, or those named or in the groups named)."""
    if "," not in inventory and not Path(inventory).exists():  # "a,b," is Ansible's inline host list
        raise InputError("-i", inventory, "an existing inventory file or directory, or a host list like 'a,b,'")
    listing = subprocess.run(
        [_ansible_inventory(), "-i", inventory, "--list"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"},  # else a file that does not parse is empty
    )
    if listing.returncode != 0:
        said = [line for line in listing.stderr.splitlines() if line.startswith(("[WARNING]: Failed", "[ERROR]"))]
        reason = " / ".join(said) or listing.stderr.strip()
        raise InputError("-i", inventory, f"an inventory that parses; ansible-inventory says: {reason}")
    data = json.loads(listing.stdout)
    hostvars: dict[str, dict[str, Any]] = data.get("_meta", {}).get("hostvars", {})
    wanted = list(patterns)
    accounts = {h for g in (ACCOUNT_GROUP, GROUPS_GROUP) for h in _group_hosts(data, g)}  # AWS, not hosts that pull
    names = [name for name in hostvars if name not in accounts]
    if wanted:
        groups = {g: v.get("hosts", []) for g, v in data.items() if isinstance(v, dict)}
        unknown = [p for p in wanted if p not in hostvars and p not in groups]
        if unknown:
            raise InputError("HOST", ", ".join(unknown), f"host or group names of {inventory}")
        chosen = {h for p in wanted for h in ([p] if p in hostvars else _group_hosts(data, p))}
        names = [n for n in names if n in chosen]
    if not names:
        raise InputError("-i", inventory, "an inventory with at least one host")
    member = {g: set(_group_hosts(data, g)) for g in (RUNNER_GROUP, AGENT_GROUP)}
    return [_inventory_target(name, hostvars[name], [g for g, hs in member.items() if name in hs]) for name in names]


def _group_hosts(data: dict[str, Any], group: str) -> list[str]:
    entry = data.get(group, {})
    hosts = list(entry.get("hosts", []))
    for child in entry.get("children", []):
        hosts += _group_hosts(data, child)
    return hosts


def _inventory_target(name: str, variables: dict[str, Any], groups: list[str]) -> Target:
    registries, services, users = expected(variables, name)
    runners, tasks = special_consumers(variables, groups)
    connection = variables.get("ansible_connection", "ssh")
    common = str(variables.get("ansible_ssh_common_args", "")) + " " + str(variables.get("ansible_ssh_extra_args", ""))
    checking = os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "true").lower() not in ("false", "0", "no")
    interpreter = str(variables.get("ansible_python_interpreter", ""))
    key = variables.get("ansible_ssh_private_key_file")  # Ansible expands ~ in it; paramiko does not
    return Target(
        name=name,
        connection={"local": "local", PODMAN: "podman", "podman": "podman"}.get(connection, "ssh"),
        address=str(variables.get("ansible_host", name)),
        port=int(variables.get("ansible_port", 22)),
        user=variables.get("ansible_user"),
        key_file=os.path.expanduser(str(key)) if key else None,
        strict_host_keys=checking and "StrictHostKeyChecking=no" not in common,
        python=interpreter if interpreter.startswith("/") else "python3",  # not Ansible's "auto" modes
        registries=registries,
        services=services,
        users=users,
        runners=runners,
        tasks=tasks,
    )


def ssh_target(spec: str) -> Target:
    """`[user@]host[:port]`, reached with the SSH agent or default keys."""
    user, _, rest = spec.rpartition("@")
    host, colon, port = rest.partition(":")
    if not host:
        raise InputError("HOST", spec, "[user@]host[:port]")
    number = validate_port(port, f"HOST {spec}: port") if colon else 22
    return Target(name=spec, connection="ssh", address=host, port=number, user=user or None)


def targets_from_arguments(
    hosts: Sequence[str], inventory: str | None, registries: list[str], services: list[str], users: list[str]
) -> list[Target]:
    """The targets the command line names; its --registry/--service/--user replace the inventory's."""
    targets = (
        inventory_targets(inventory, hosts) if inventory else [ssh_target(h) for h in hosts] or [Target("localhost")]
    )
    rule = CredentialRule.build(registries, source="--registry") if registries else None
    for target in targets:
        if rule is not None:
            target.registries = list(rule.registries)
        target.services = services or target.services
        target.users = users or target.users
        if not (target.services or target.users):
            target.users = [target.user or getpass.getuser()]
    return targets


def to_json(reports: Sequence[Report]) -> str:
    return json.dumps(
        {
            "passed": all(r.passed for r in reports),
            "hosts": [
                {
                    "host": r.host,
                    "passed": r.passed,
                    "unreachable": r.unreachable,
                    "findings": [asdict(f) for f in r.findings],
                }
                for r in reports
            ],
        },
        indent=2,
    )


SEVERITY_STYLE = {
    "ok": "[green]pass[/]",
    "note": "[blue]note[/]",
    "warning": "[yellow]warn[/]",
    "error": "[bold red]FAIL[/]",
}
SEVERITY_WORD = {"ok": "pass", "note": "note", "warning": "warn", "error": "FAIL"}
UNREACHABLE_FIX = "check the address, port, user and key; the host needs python3, and sudo for a user other than root"
HEADERS = ("host", "consumer", "check", "result", "evidence (and the fix)")


def _title(reports: Sequence[Report]) -> str:
    return f"ecrkit validate: {sum(r.passed for r in reports)} of {len(reports)} hosts pass"


def _rows(reports: Sequence[Report]) -> list[tuple[str, str, str, str, str, str]]:
    """(host, consumer, check, severity, evidence, fix), host and consumer given once."""
    rows = []
    for report in reports:
        if report.unreachable is not None:
            rows.append((report.host, "", "reachable", "error", report.unreachable, UNREACHABLE_FIX))
        host, subject = report.host if report.unreachable is None else "", None
        for f in report.findings:
            rows.append((host, f.subject if f.subject != subject else "", f.check, f.severity, f.evidence,
                         f.fix if f.severity != "ok" else ""))  # fmt: skip
            host, subject = "", f.subject
    return rows


def report_table(reports: Sequence[Report]) -> Table:
    """One row per check; where a check did not pass, its fix follows the evidence."""
    table = Table(title=_title(reports))
    for column in HEADERS[:-1]:
        table.add_column(column, no_wrap=True)
    table.add_column(HEADERS[-1], overflow="fold", ratio=1)  # takes the width the others leave
    for host, subject, check, severity, evidence, fix in _rows(reports):
        if host and table.rows:
            table.add_section()
        text = escape(evidence) + (f"\n[bold]fix:[/] {escape(fix)}" if fix else "")
        table.add_row(escape(host), escape(subject), escape(check), SEVERITY_STYLE[severity], text)
    return table


def print_report(console: Console, reports: Sequence[Report]) -> None:
    """The table where it fits; else one finding per line below its host and consumer (80
    columns, CI logs, a file), with its fix on the next line."""
    rows = _rows(reports)
    plain = [(h, c, k, SEVERITY_WORD[s], e + (f"\nfix: {f}" if f else "")) for h, c, k, s, e, f in rows]
    if fits(console, HEADERS, plain):
        console.print(report_table(reports))
        return
    console.print(_title(reports), highlight=False, soft_wrap=True)
    for host, subject, check, severity, evidence, fix in rows:
        if host:
            passed = next(r.passed for r in reports if r.host == host)
            console.print(f"[bold]{escape(host)}[/]: {'passes' if passed else 'FAILS'}", highlight=False)
        if subject:
            console.print(f"  {escape(subject)}", highlight=False)
        line = f"    {SEVERITY_STYLE[severity]}  {escape(check)}: {escape(evidence)}"
        console.print(line, highlight=False, soft_wrap=True)
        if fix:
            console.print(f"          fix: {escape(fix)}", highlight=False, soft_wrap=True)


def to_junit(reports: Sequence[Report]) -> str:
    """JUnit XML, as GitLab's Tests tab reads it: a testsuite per host, a testcase per consumer
    and check; failed checks carry their evidence and fix, warnings and notes their text."""
    suites = ElementTree.Element("testsuites", name="ecrkit validate")
    for report in reports:
        suite = ElementTree.SubElement(suites, "testsuite", name=report.host)
        cases: list[tuple[str, Finding | None]] = [(f"{f.subject}: {f.check}", f) for f in report.findings]
        if report.unreachable is not None:
            cases.insert(0, ("reachable", None))
        seen: dict[str, int] = {}
        for name, finding in cases:
            seen[name] = seen.get(name, 0) + 1
            case = ElementTree.SubElement(
                suite, "testcase", classname=report.host, name=name if seen[name] == 1 else f"{name} #{seen[name]}"
            )
            if finding is None:
                failure = ElementTree.SubElement(case, "failure", message=str(report.unreachable), type="unreachable")
                failure.text = f"{report.unreachable}\nfix: {UNREACHABLE_FIX}"
            elif finding.severity == "error":
                failure = ElementTree.SubElement(case, "failure", message=finding.evidence, type="error")
                failure.text = f"{finding.evidence}\nfix: {finding.fix}"
            else:
                out = ElementTree.SubElement(case, "system-out")
                out.text = finding.evidence + (f"\n{finding.severity}; fix: {finding.fix}" if finding.fix else "")
        failures = sum(1 for case in suite if case.find("failure") is not None)
        suite.set("tests", str(len(suite)))
        suite.set("failures", str(failures))
        suite.set("errors", "0")
    suites.set("tests", str(sum(int(s.get("tests", 0)) for s in suites)))
    suites.set("failures", str(sum(int(s.get("failures", 0)) for s in suites)))
    ElementTree.indent(suites)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
