"""Converge benchmark: cost ratios measured in one run on the same disposable hosts.

(a) an idempotent rerun of site.yml on one host / a play that only gathers facts and pings it
(b) a converge of 16 fresh hosts / a converge of 1 fresh host (forks 16)

Ratios, not seconds, are the result: they hold across machines of one kind. Run: make bench.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from ecrkit.testbed import Host, ansible_playbook, recap, remove_hosts, start_hosts, write_inventory

HOSTS = 16
VARIABLES: dict[str, object] = {
    "ecr_credential_helper_install_method": "controller_file",
    "ecr_credential_helper_src": "/usr/bin/docker-credential-ecr-login",
    "docker_auth_config_registries": ["123456789012.dkr.ecr.us-east-1.amazonaws.com"],
}
FACTS_AND_PING = """\
- name: Only gather facts and ping
  hosts: all
  gather_facts: false
  tasks:
    - name: Gather facts
      ansible.builtin.setup:
    - name: Ping
      ansible.builtin.ping:
"""


def timed_playbook(inventory: Path, *args: str) -> float:
    started = time.perf_counter()
    result = ansible_playbook("-i", str(inventory), *args, env={"ANSIBLE_FORKS": str(HOSTS)})
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or any(r["failed"] or r["unreachable"] for r in recap(result.stdout).values()):
        sys.exit(f"benchmark run failed: {' '.join(args)}\n{result.stdout[-3000:]}")
    return elapsed


def main() -> int:
    names = [f"ecrkit-bench-{i:02d}" for i in range(1, HOSTS + 1)]
    work = Path(tempfile.mkdtemp(prefix="ecrkit-bench-"))
    (work / "facts.yml").write_text(FACTS_AND_PING)
    facts_cache = work / "facts"
    os.environ["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(facts_cache)
    try:
        one = start_hosts(names[:1])
        single = write_inventory(work / "one.yml", {"workstations": one}, VARIABLES)
        converge_one = timed_playbook(single, "site.yml")
        rerun = timed_playbook(single, "site.yml")
        facts_ping = timed_playbook(single, str(work / "facts.yml"))

        many = start_hosts(names)  # fresh containers, the first one included
        fleet = write_inventory(work / "many.yml", {"workstations": many}, VARIABLES)
        converge_many = timed_playbook(fleet, "site.yml")
    finally:
        remove_hosts(Host(name) for name in names)

    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"(a) idempotent rerun / facts+ping, 1 host: {rerun:.1f}s / {facts_ping:.1f}s"
        f" = {rerun / facts_ping:.2f} (target <= 1.5)"
    )
    print(
        f"(b) converge {HOSTS} hosts / 1 host, forks {HOSTS}: {converge_many:.1f}s / {converge_one:.1f}s"
        f" = {converge_many / converge_one:.2f} (target <= 3)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
