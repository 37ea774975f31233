"""Validate benchmark: `ecrkit validate -i INVENTORY` over SSH for 1 host and for 32 hosts.

The hosts are systemd containers with sshd on loopback ports (as converge.py starts them), given
the stand-in's instance role and converged with site.yml, so that each check (the helper's live
`get` included) has something real to judge. The figure is the wall-clock ratio 32 hosts / 1 host,
and the validating process's CPU-seconds per host. Run: make bench; BENCH_VALIDATE_HOSTS=4 for a
quick check; BENCH_VALIDATE_PROFILE=FILE adds a run of the fleet under cProfile.

Since validate reaches hosts through Ansible (ansible-runner), the 1-host time is printed beside
the one recorded before that change (paramiko), and so is what Ansible's own start-up costs here:
`ansible-inventory --list` and an `ansible-playbook` play of one no-op task on the local host.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testbed.hosts import Host, ansible_playbook, give_stand_in_role, remove_hosts, start_ssh_hosts, write_inventory
from testbed.standin import StandIn

HOSTS = int(os.environ.get("BENCH_VALIDATE_HOSTS", "32"))
# `validate 1 host seconds` over paramiko, before validate went through Ansible: this script at
# commit 50b0b31, BENCH_VALIDATE_HOSTS=4, 2026-12-06, on this 2-core machine shared with other
# sessions (60% busy with other work); bench/README.md has it.
BEFORE_ANSIBLE_1_HOST = 0.77
NOOP_PLAY = "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.meta: noop\n"
PROFILE = os.environ.get("BENCH_VALIDATE_PROFILE", "")  # a path: one more fleet run under cProfile, stats there
VARIABLES: dict[str, object] = {
    "ecr_credential_helper_install_method": "controller_file",
    "ecr_credential_helper_src": "/usr/bin/docker-credential-ecr-login",
    "docker_auth_config_registries": ["123456789012.dkr.ecr.us-east-1.amazonaws.com"],
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_cpu() -> float:
    """CPU-seconds the whole machine has been busy (every process: the hosts' probes too)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def timed_validate(inventory: Path, profile: Path | None = None) -> tuple[float, float, float, int]:
    """Wall-clock seconds, the validating process's CPU-seconds and the machine's of one
    `ecrkit validate -i inventory`, and how many hosts passed (the time is what is measured; the
    count says whether every check really ran). With `profile`, the run is under cProfile (its
    stats written there), and its time is not a figure."""
    started, cpu, busy = time.perf_counter(), children_cpu(), machine_cpu()
    runner = ["-m", "cProfile", "-o", str(profile)] if profile else []
    done = subprocess.run([sys.executable, *runner, "-m", "ecrkit", "validate", "-i", str(inventory), "--json"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode not in (0, 1):
        sys.exit(f"ecrkit validate failed to run ({done.returncode}): {done.stderr[-2000:]}")
    hosts = json.loads(done.stdout)["hosts"]
    for host in hosts:  # a failing host is a fact about the run, not noise: say what failed
        failed = [f for f in host["findings"] if f["severity"] == "error"]
        why = host["unreachable"] or "; ".join(f"{f['subject']}: {f['check']}: {f['evidence']}" for f in failed)
        if not host["passed"]:
            print(f"{host['host']} failed: {why}", file=sys.stderr)
    passed = sum(1 for host in hosts if host["passed"])
    return time.perf_counter() - started, children_cpu() - cpu, machine_cpu() - busy, passed


def ansible_start_up(work: Path) -> tuple[float, float]:
    """Wall seconds of `ansible-inventory --list` and of a one-task no-op play on the local host:
    what any run through Ansible pays before it reaches a host (the better of three each)."""
    play = work / "noop.yml"
    play.write_text(NOOP_PLAY)
    bin_dir = Path(sys.executable).parent
    commands = (
        [str(bin_dir / "ansible-inventory"), "-i", "localhost,", "--list"],
        [str(bin_dir / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play)],
    )
    timings = []
    for command in commands:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            best = min(best, time.perf_counter() - started)
        timings.append(best)
    return timings[0], timings[1]


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="ecrkit-bench-validate-"))
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    names = [f"ecrkit-bench-validate-{os.getpid()}-{i:02d}" for i in range(1, HOSTS + 1)]
    stand_in = StandIn(work / "standin")
    try:
        stand_in.up()
        hosts = start_ssh_hosts(names, key.with_suffix(".pub"), first_port=22101, options=stand_in.host_options())
        for host in hosts:
            give_stand_in_role(host, stand_in)
        fleet = write_inventory(work / "fleet.yml", {"workstations": hosts}, VARIABLES, key)
        one = write_inventory(work / "one.yml", {"workstations": hosts[:1]}, VARIABLES, key)
        converged = ansible_playbook("-i", str(fleet), "site.yml", env={"ANSIBLE_FORKS": str(HOSTS)})
        if converged.returncode != 0:
            sys.exit(f"site.yml failed:\n{converged.stdout[-3000:]}")
        # Warm every host, not only the first: the controller's caches, each host's first SSH login
        # and its helper's token cache, so that both timed runs find what a periodic validate finds.
        timed_validate(fleet)
        busy = machine_cpu()
        time.sleep(5)  # the machine's other work, which the timed runs share the cores with
        background = (machine_cpu() - busy) / 5 / (os.cpu_count() or 1)
        inventory_seconds, playbook_seconds = ansible_start_up(work)
        single, single_cpu, single_busy, single_passed = timed_validate(one)
        many, many_cpu, many_busy, many_passed = timed_validate(fleet)
        if PROFILE:
            timed_validate(fleet, Path(PROFILE))
    finally:
        remove_hosts(Host(name) for name in names)
        stand_in.down()
    print(f"validate hosts passing, 1 host: {single_passed} (target == 1)")
    print(f"validate hosts passing, {HOSTS} hosts: {many_passed} (target == {HOSTS})")
    print(f"validate 1 host seconds: {single:.2f}")
    print(f"validate {HOSTS} hosts seconds: {many:.2f}")
    print(f"validate 1 host seconds before Ansible (paramiko, recorded): {BEFORE_ANSIBLE_1_HOST:.2f}")
    print(f"validate 1 host seconds added by Ansible: {single - BEFORE_ANSIBLE_1_HOST:.2f} (target <= 1)")
    print(f"Ansible start-up seconds, ansible-inventory --list: {inventory_seconds:.2f}")
    print(f"Ansible start-up seconds, ansible-playbook with one no-op task: {playbook_seconds:.2f}")
    print(f"validate CPU-s per host, 1 host: {single_cpu:.2f}")
    print(f"validate CPU-s per host, {HOSTS} hosts: {many_cpu / HOSTS:.3f}")
    if HOSTS > 1:
        print(f"validate CPU-s per added host: {(many_cpu - single_cpu) / (HOSTS - 1):.3f}")
    print(f"machine CPU-s busy per host, 1 host: {single_busy:.2f}")
    print(f"machine CPU-s busy per host, {HOSTS} hosts: {many_busy / HOSTS:.2f}")
    print(f"machine busy with other work before the timed runs: {background:.0%} of {os.cpu_count()} cores")
    print(f"validate {HOSTS} hosts / 1 host: {many / single:.2f} (target <= 4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
