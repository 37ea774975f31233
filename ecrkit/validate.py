"""`ecrkit validate`: run the probe on hosts through Ansible (ansible-runner), judge the facts,
and report. Each host is reached as its inventory says (connection plugin, ssh_config and
ssh args, become, interpreter, forks); `[user@]host[:port]` goes through an implicit inventory
over OpenSSH. A host that cannot be probed is reported in one line, never fatal.

What each host is expected to have comes from its Ansible variables (an inventory, read by
`ansible-inventory` with the roles' defaults underneath) or from the command line.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ecrkit.checks import Finding, judge, probe_args
from ecrkit.errors import EcrkitError, InputError
from ecrkit.output import fits
from ecrkit.plans import AGENT_GROUP, JOB_HOST_GROUP, RUNNER_GROUP, expected, instance_metadata, special_consumers
from ecrkit.probe_facts import ProbeResult
from ecrkit.settings import CredentialRule, validate_port

# The file validate sends to hosts: ecrkit/probe.py, a link to plugins/modules/probe.py (the module
# ecrkit.ecr.probe), so that the wheel holds it; no module imports it (its facts' types: ecrkit.probe_facts).
PROBE = Path(__file__).with_name("probe.py")
# Every wait is bounded, and a timeout is named. Ansible's connection timeout (OpenSSH's
# ConnectTimeout: the TCP connection and the host's SSH banner) unless ANSIBLE_TIMEOUT says
# otherwise; the probe bounds its own live calls (its LIVE_TIMEOUT: a host's take at most twice
# that); PROBE_TIMEOUT, the task's timeout, catches a probe, or a key exchange, that hangs elsewhere.
SSH_TIMEOUT = 15
PROBE_TIMEOUT = 300
FORKS = 16  # hosts probed at once when Ansible's configuration does not say (ANSIBLE_FORKS, ansible.cfg's forks)
MODULE = "ecrkit_probe"  # the package's copy of ecrkit.ecr.probe, so that the CLI needs no installed collection
# The one play `ecrkit validate` runs: the probe, on each host, through the connection, become and
# interpreter its inventory gives it. playbooks/validate.yml runs the same module with the same
# arguments (ecrkit.plans.validate_args) and judges it with the same checks.judge.
PLAY = f"""- name: ecrkit validate
  hosts: all
  gather_facts: false
  become: true
  tasks:
    - name: Probe every process that runs the helper
      {MODULE}:
        consumers: "{{{{ __ecrkit_probe[inventory_hostname].consumers }}}}"
        registries: "{{{{ __ecrkit_probe[inventory_hostname].registries }}}}"
        imds: "{{{{ __ecrkit_probe[inventory_hostname].imds | default(omit) }}}}"
      check_mode: false
      timeout: {PROBE_TIMEOUT}
"""


@dataclass
class Target:
    """A host to probe and what it should have. From an inventory (`inventory` its path or host
    list), Ansible reaches it as the inventory says; without one, `connection` and the rest say how."""

    name: str
    connection: str = "local"  # local or ssh, without an inventory
    address: str = ""
    port: int | None = None  # None: ssh_config's Port, else 22
    user: str | None = None
    inventory: str = ""
    registries: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    runners: dict[str, str] = field(default_factory=dict)  # GitLab Runner units -> config.toml ("": found)
    tasks: list[dict[str, str]] = field(default_factory=list)  # Mesos agents whose tasks fetch an archive
    imds: dict[str, Any] | None = None  # an EC2 instance: IMDS asked, and a job's reach (plans.instance_metadata)


@dataclass
class Report:
    host: str
    findings: list[Finding] = field(default_factory=list)
    unreachable: str | None = None  # why the probe could not run

    @property
    def passed(self) -> bool:
        return self.unreachable is None and all(f.severity != "error" for f in self.findings)


def validate(target: Target, vault_password_file: str | None = None) -> Report:
    return validate_all([target], vault_password_file=vault_password_file)[0]


def validate_all(
    targets: Sequence[Target],
    progress: Callable[[Report], None] = lambda _: None,
    *,
    vault_password_file: str | None = None,
) -> list[Report]:
    """Probe every target through Ansible (one run per inventory, its forks in parallel) and
    judge each; reports in the targets' order. A host that cannot be probed is reported, never fatal."""
    results: dict[int, ProbeResult | str] = {}
    for inventory in dict.fromkeys(t.inventory for t in targets):
        chosen = [(i, t) for i, t in enumerate(targets) if t.inventory == inventory]
        probed = probe_hosts([t for _, t in chosen], vault_password_file)
        results.update(zip([i for i, _ in chosen], probed, strict=True))
    reports = []
    for index, target in enumerate(targets):
        result = results[index]
        report = (
            Report(target.name, unreachable=result)
            if isinstance(result, str)
            else Report(target.name, judge(result, target.registries))
        )
        progress(report)
        reports.append(report)
    return reports


def probe_hosts(targets: Sequence[Target], vault_password_file: str | None = None) -> list[ProbeResult | str]:
    """Each target's facts, or the one-line reason it could not be probed: one ansible-playbook
    run (through ansible-runner) over the targets' inventory, or an implicit one made from them."""
    import ansible_runner  # noqa: PLC0415 - only validate reaches hosts

    inventory = targets[0].inventory
    with tempfile.TemporaryDirectory(prefix="ecrkit-validate-") as work:
        data = Path(work)
        (data / "library").mkdir()
        (data / "library" / f"{MODULE}.py").symlink_to(PROBE.resolve())
        (data / "validate.yml").write_text(PLAY)
        if inventory:
            names = [t.name for t in targets]
            sources = [str(Path(inventory).resolve()) if Path(inventory).exists() else inventory]
        else:  # [user@]host[:port] is no inventory name: each host gets one
            names = [f"host{i}" for i in range(len(targets))]
            implicit = {"all": {"hosts": {n: _connection(t) for n, t in zip(names, targets, strict=True)}}}
            (data / "hosts.json").write_text(json.dumps(implicit))
            sources = [str(data / "hosts.json")]
        (data / "limit").write_text("".join(f"{name}\n" for name in names))
        probe = {
            name: probe_args(t.registries, t.services, t.users, t.runners, t.tasks, imds=t.imds)
            for name, t in zip(names, targets, strict=True)
        }
        configured = _ansible_settings("HOST_KEY_CHECKING", "DEFAULT_FORKS")
        origin = configured["DEFAULT_FORKS"][1]
        env = {
            "ANSIBLE_LIBRARY": os.pathsep.join(
                [str(data / "library"), *filter(None, [os.environ.get("ANSIBLE_LIBRARY")])]
            ),
            # ansible-runner turns host key checking off unless told: keep what Ansible's configuration says.
            "ANSIBLE_HOST_KEY_CHECKING": str(configured["HOST_KEY_CHECKING"][0]),
            "ANSIBLE_TIMEOUT": os.environ.get("ANSIBLE_TIMEOUT", str(SSH_TIMEOUT)),
            "ANSIBLE_NOCOLOR": "1",
            # ansible-runner runs `ansible-playbook` from the PATH: this Python's, activated or not.
            "PATH": os.pathsep.join(
                [str(Path(_ansible_command("ansible-playbook")).parent), os.environ.get("PATH", "")]
            ),
        }
        runner = ansible_runner.run(
            private_data_dir=work,
            project_dir=os.getcwd(),  # ansible-playbook runs here: the user's ansible.cfg, as from a shell
            playbook=str(data / "validate.yml"),
            inventory=sources,
            limit=f"@{data / 'limit'}",
            extravars={"__ecrkit_probe": probe},
            cmdline=f"--vault-password-file {shlex.quote(vault_password_file)}" if vault_password_file else None,
            envvars=env,
            # Ansible's forks when the user set them; else as many as FORKS, not Ansible's default of 5.
            forks=None if origin != "default" else max(1, min(FORKS, len(names))),
            quiet=True,
            fact_cache_type="",  # the user's fact cache, not ansible-runner's (interpreters found stay found)
            suppress_env_files=True,
        )
        outcomes: dict[str, ProbeResult | str] = {}
        for event in runner.events:
            kind, event_data = event.get("event"), event.get("event_data", {})
            if event_data.get("task_action") != MODULE or kind not in EVENT_OUTCOMES:
                continue
            result = event_data.get("res", {})
            outcomes[event_data["host"]] = result if kind == "runner_on_ok" else cause(result)
        if len(outcomes) < len(names):  # hosts Ansible never ran the probe for: its own error says why
            said = _first_error(f"{runner.stdout.read()}\n{runner.stderr.read() if runner.stderr else ''}")
            why = f"Ansible did not run the probe: {said or f'ansible-playbook exited {runner.rc}'}"
            outcomes = {name: outcomes.get(name, why) for name in names}
        return [outcomes[name] for name in names]


EVENT_OUTCOMES = ("runner_on_ok", "runner_on_failed", "runner_on_unreachable")


def _first_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("[ERROR]", "ERROR!"))]
    return (errors or lines or [""])[0]


def _ansible_settings(*names: str) -> dict[str, tuple[Any, str]]:
    """Settings as Ansible's configuration gives them (environment, ansible.cfg, default), each
    with where it came from ("default" when nobody set it)."""
    try:
        from ansible.config.manager import ConfigManager  # noqa: PLC0415
    except ImportError:  # ansible-core is a dependency; an environment without it gets the command's message
        raise EcrkitError(
            f"validate reaches hosts through Ansible, which {sys.executable} cannot import: pip install ansible-core"
        ) from None
    manager = ConfigManager()
    return {name: manager.get_config_value_and_origin(name) for name in names}


def _connection(target: Target) -> dict[str, Any]:
    """A host given as [user@]host[:port], as an implicit inventory's variables: over Ansible's ssh
    connection, so OpenSSH reads ~/.ssh/config (Host aliases, User, Port, IdentityFile, ProxyJump,
    ProxyCommand) and known_hosts. The probe acts as each consumer's user: a login other than
    root becomes root (sudo without a password)."""
    if target.connection == "local":
        return {"ansible_connection": "local", "ansible_become": False, "ansible_python_interpreter": sys.executable}
    variables: dict[str, Any] = {"ansible_connection": "ssh", "ansible_host": target.address}
    if target.port is not None:
        variables["ansible_port"] = target.port
    if target.user:
        variables["ansible_user"] = target.user
    variables["ansible_become"] = login_user(target) != "root"
    return variables


def login_user(target: Target) -> str:
    """The user OpenSSH logs in as: the one given, else ~/.ssh/config's User for the host, else ours."""
    if target.user:
        return target.user
    ssh = shutil.which("ssh")
    if target.connection == "ssh" and target.address and ssh:
        port = ["-p", str(target.port)] if target.port is not None else []
        shown = subprocess.run([ssh, "-G", *port, target.address], capture_output=True, text=True, check=False)
        for line in shown.stdout.splitlines():
            key, _, value = line.partition(" ")
            if key == "user" and value:
                return value
    return getpass.getuser()


# What Ansible says when a host cannot be probed (OpenSSH's words, sudo's, the shell's) and the
# cause it names, first match wins; {line} is the line that matched, {timeout} the connection timeout.
CAUSES: tuple[tuple[str, str], ...] = (
    (r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed",
     "host key mismatch: the host's key is not the one known_hosts holds for it (Host key verification failed)"),
    (r"Host key verification failed|No \S+ host key is known",
     "host key unknown: known_hosts holds no key for the host and host key checking is on ({line})"),
    (r"timed out during banner exchange",
     "{where}the host accepted the connection but never answered (no SSH banner within {timeout} s)"),
    (r"Connection refused", "connection refused: {line}"),
    (r"Could not resolve hostname|No route to host|Network is unreachable", "unreachable: {line}"),
    (r"Connection timed out|Operation timed out", "unreachable: no answer within {timeout} s ({line})"),
    (r"kex_exchange_identification|banner exchange|Bad packet length|Protocol mismatch|invalid format",
     "not an SSH server: {line}"),
    (r"Permission denied \(|Too many authentication failures|Authentication failed", "authentication failed: {line}"),
    (r"Missing (sudo|su|doas) password|a password is required|no (tty|askpass) present",
     "become needs a password and none was given (ansible_become_password): {line}"),
    (r"Incorrect (sudo|su|doas) password|incorrect password attempt|Authentication failure",
     "become refused: the become password was wrong ({line})"),
    (r"not in the sudoers file|is not allowed to execute|may not run sudo", "become refused: {line}"),
    (r"python[\d.]*: (not found|No such file or directory)|No python interpreters found|interpreter discovery",
     "no Python on the host: {line} (install python3, or set ansible_python_interpreter)"),
    (r"Timeout \(\d+s\) waiting for privilege escalation prompt", "become: {line}"),
    (r"no vault secrets found", "vault: the inventory holds encrypted values and no vault password was given "
     "(--vault-password-file, or ANSIBLE_VAULT_PASSWORD_FILE)"),
    (r"Decryption failed", "vault: the vault password given does not open the inventory's encrypted values"),
)  # fmt: skip
# Ansible's and OpenSSH's words around the cause; OpenSSH's "Connection to HOST port PORT timed out".
WRAPPING = re.compile(
    r"^(Task failed: |Failed to connect to the host via \S+: |ssh: "
    r"|Data could not be sent to remote host \"[^\"]*\"\. Make sure this host can be reached over \S+: )+",
    re.ASCII,
)
WHERE = re.compile(r"(?:to|host) (\S+) port (\d+)", re.ASCII)
# Lines of a traceback or Ansible's wrapping of it, never a cause.
NOISE = re.compile(r"^(Traceback|File \"|MODULE FAILURE|See stdout/stderr|The full traceback)", re.ASCII)


def cause(result: Mapping[str, Any]) -> str:
    """One line naming why a host could not be probed, from Ansible's result: never a traceback."""
    text = f"{result.get('msg') or ''}\n{result.get('module_stderr') or ''}".replace("\r", "\n")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [WRAPPING.sub("", line) for line in lines]
    timeout = os.environ.get("ANSIBLE_TIMEOUT", str(SSH_TIMEOUT))
    address = next(filter(None, (WHERE.search(line) for line in lines)), None)
    where = f"{address[1]} port {address[2]}: " if address else ""
    for pattern, said in CAUSES:
        line = next((line for line in lines if re.search(pattern, line, re.ASCII)), None)
        if line is not None:
            return said.format(line=line, timeout=timeout, where=where)
    useful = [line for line in lines if not NOISE.match(line) and not line.startswith(" ")]
    return (useful or ["Ansible gave no reason"])[0]


ACCOUNT_GROUP = "ecr_accounts"  # playbooks/ecr.yml's group
GROUPS_GROUP = "autoscaling_groups"  # playbooks/autoscaling_groups.yml's: Auto Scaling groups, driven through the API


def _ansible_command(name: str) -> str:
    """An Ansible command (ansible-inventory, ansible-playbook): next to this Python (one
    virtualenv, activated or not), else on the PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        raise EcrkitError(
            f"validate reaches hosts through Ansible and needs {name}, found neither next to "
            f"{sys.executable} nor on the PATH: pip install ansible-core (or ansible) there"
        )
    return found


def inventory_targets(inventory: str, patterns: Iterable[str], vault_password_file: str | None = None) -> list[Target]:
    """The hosts of an Ansible inventory (all, or those named or in the groups named)."""
    if "," not in inventory and not Path(inventory).exists():  # "a,b," is Ansible's inline host list
        raise InputError("-i", inventory, "an existing inventory file or directory, or a host list like 'a,b,'")
    listing = subprocess.run(
        [_ansible_command("ansible-inventory"), "-i", inventory, "--list"]
        + (["--vault-password-file", vault_password_file] if vault_password_file else []),
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
    # ansible-inventory leaves a host without variables out of hostvars: every host of every group counts.
    hostvars = {**{name: {} for name in _group_hosts(data, "all")}, **hostvars}
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
    member = {g: set(_group_hosts(data, g)) for g in (RUNNER_GROUP, AGENT_GROUP, JOB_HOST_GROUP)}
    return [
        _inventory_target(name, hostvars[name], [g for g, hs in member.items() if name in hs], inventory)
        for name in names
    ]


def _group_hosts(data: dict[str, Any], group: str) -> list[str]:
    entry = data.get(group, {})
    hosts = list(entry.get("hosts", []))
    for child in entry.get("children", []):
        hosts += _group_hosts(data, child)
    return hosts


def _inventory_target(name: str, variables: dict[str, Any], groups: list[str], inventory: str) -> Target:
    registries, services, users = expected(variables, name)
    runners, tasks = special_consumers(variables, groups)
    imds = instance_metadata(variables, groups, name)
    user = variables.get("ansible_user")
    return Target(
        name=name,
        connection=str(variables.get("ansible_connection", "ssh")),
        user=user if isinstance(user, str) else None,
        inventory=inventory,
        registries=registries,
        services=services,
        users=users,
        runners=runners,
        tasks=tasks,
        imds=imds,
    )


def ssh_target(spec: str) -> Target:
    """`[user@]host[:port]`, reached as OpenSSH reaches it (~/.ssh/config, the SSH agent, default keys)."""
    user, _, rest = spec.rpartition("@")
    host, colon, port = rest.partition(":")
    if not host:
        raise InputError("HOST", spec, "[user@]host[:port]")
    number = validate_port(port, f"HOST {spec}: port") if colon else None
    return Target(name=spec, connection="ssh", address=host, port=number, user=user or None)


def targets_from_arguments(  # noqa: PLR0917 - the command line's arguments, in its order
    hosts: Sequence[str],
    inventory: str | None,
    registries: list[str],
    services: list[str],
    users: list[str],
    vault_password_file: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> list[Target]:
    """The targets the command line names; its --registry/--service/--user replace the inventory's, and
    `metadata` (the instance-metadata options, as the variables they stand for) replaces what the
    inventory says of IMDS."""
    targets = (
        inventory_targets(inventory, hosts, vault_password_file)
        if inventory
        else [ssh_target(h) for h in hosts] or [Target("localhost")]
    )
    rule = CredentialRule.build(registries, source="--registry") if registries else None
    imds = instance_metadata(metadata, [], name=METADATA_OPTIONS.__getitem__) if metadata else None
    for target in targets:
        if metadata:
            target.imds = imds
        if rule is not None:
            target.registries = list(rule.registries)
        target.services = services or target.services
        target.users = users or target.users
        if not (target.services or target.users):
            target.users = [target.user or (login_user(target) if target.connection == "ssh" else getpass.getuser())]
    return targets


# The command's instance-metadata options, by the inventory variable each stands for.
METADATA_OPTIONS = {
    "ecrkit_instance_metadata": "--instance-metadata",
    "ecrkit_local_jobs": "--local-jobs",
    "ecrkit_job_probe_image": "--job-probe-image",
    "ecrkit_job_probe_network": "--job-probe-network",
}


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
UNREACHABLE_FIX = (
    "the evidence names the cause; reach the host as the validator does to try a fix: "
    "ansible HOST -i INVENTORY -m ansible.builtin.ping (ssh HOST without an inventory)"
)
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
