"""ansible-playbook loads ecrkit once, in its own process, and its forked workers inherit it.

A worker that imports the package itself pays for that on every task and host (the benchmark's
figure (c), bench/README.md). Each import of a module opens its compiled file, in whichever
process imports it: strace, following the forks, counts the imports of ecrkit.converge, which
the roles' converge action runs in each worker.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed.hosts import ANSIBLE_ENV, BIN, ROOT

TASKS = 6
PRELOAD = "{{ 'ecrkit' | ecrkit.ecr.version }}"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def _play(first_name: str, directory: Path) -> str:
    tasks = [
        {
            "name": first_name if index == 0 else f"Task {index}",
            # A role's converge that validates a registry (botocore's partition table), with a package default.
            "ecrkit.ecr.converge": {
                "role": "registries_conf",
                "options": {
                    "registry": REGISTRY,
                    "cache_prefix": "{{ 'docker-hub' if 'root' in 'docker_auth_config_users' | ecrkit.ecr.default }}",
                    "upstream": "docker.io",
                    "path": str(directory / f"drop-in-{index}.conf"),
                },
            },
        }
        for index in range(TASKS)
    ]
    return yaml.safe_dump([{"name": "Controller cost", "hosts": "localhost", "gather_facts": False, "tasks": tasks}])


def _loads(tmp_path: Path, first_name: str) -> tuple[int, int]:
    """How many times the play's processes imported ecrkit.converge and read botocore's partition table."""
    play, trace = tmp_path / "play.yml", tmp_path / "trace"
    play.write_text(_play(first_name, tmp_path))
    command = ["strace", "-f", "-qq", "-e", "trace=openat", "-o", str(trace), str(BIN / "ansible-playbook")]
    done = subprocess.run(
        # The modules run here, with the Python that runs the tests.
        [*command, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", str(play)],
        capture_output=True, text=True, cwd=ROOT, env={**ANSIBLE_ENV, "ANSIBLE_FORKS": "1"}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    lines = [line for line in trace.read_text().splitlines() if "ENOENT" not in line]
    # The compiled module, or its source where no compiled file is kept.
    converge = (f"{ROOT / 'ecrkit' / '__pycache__' / 'converge.'}", f'"{ROOT / "ecrkit" / "converge.py"}"')
    return (
        sum(1 for line in lines if any(name in line for name in converge)),
        sum(1 for line in lines if "botocore/data/partitions.json" in line),
    )


def test_a_name_that_templates_the_version_loads_ecrkit_once_for_every_worker(tmp_path: Path) -> None:
    assert _loads(tmp_path, f"Plan (ecrkit {PRELOAD})") == (1, 1)


def test_without_it_each_task_reads_the_partition_table_again(tmp_path: Path) -> None:
    """The negative control: the counts above can fail. ansible-playbook loads an action plugin's
    class in its own process (to read its BYPASS_HOST_LOOP), and so ecrkit.converge; the table is
    read on first use, in each worker when no name read it first."""
    assert _loads(tmp_path, "Plan") == (1, TASKS)


def _first_names() -> list[tuple[str, str]]:
    names = []
    for path in sorted(ROOT.glob("roles/*/tasks/main.yml")) + sorted(ROOT.glob("playbooks/*.yml")):
        first = yaml.safe_load(path.read_text())[0]
        names.append((str(path.relative_to(ROOT)), first["name"]))
    return names


@pytest.mark.parametrize(("path", "name"), _first_names(), ids=[path for path, _ in _first_names()])
def test_every_role_and_playbook_loads_ecrkit_in_ansible_playbooks_process(path: str, name: str) -> None:
    assert PRELOAD in name
