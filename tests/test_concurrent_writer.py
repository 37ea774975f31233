"""GitLab Runner rewrites its own config.toml (a refreshed runner token, with an atomic rename)
while ecrkit's converge merges the helper into the same file. The converge must never put back
what the runner replaced: it writes only while the file still holds what its plan was made from,
and otherwise probes and plans again (ecrkit.converge.as_read, the files module's expected_sha256).

The runner here is emulated as it behaves: read the file, change the token, write a temporary
file beside it and rename it into place."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import tomlkit
import yaml

from testbed.hosts import ansible_playbook
from tests.facts import runner_options

REGISTRIES = ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "210987654321.dkr.ecr.eu-west-1.amazonaws.com")
CONFIG = """concurrent = 4

[[runners]]
  name = "docker-jobs"
  url = "https://gitlab.example.com"
  token = "glrt-0000"
  executor = "docker"
  [runners.docker]
    image = "alpine"
"""


class Runner:
    """GitLab Runner refreshing its token every `interval` seconds; it records every token it
    finds replaced by an older one of its own (a write of ecrkit's reverted it)."""

    def __init__(self, config: Path, interval: float) -> None:
        self.config, self.interval = config, interval
        self.written = 0
        self.reverted: list[tuple[int, str]] = []  # (the token it wrote last, the token it found)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def token(self) -> int:
        return int(re.search(r'token = "glrt-(\d+)"', self.config.read_text())[1])  # type: ignore[index]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()
            document = tomlkit.parse(self.config.read_text())
            self.written += 1
            document["runners"][0]["token"] = f"glrt-{self.written:04d}"
            staged = self.config.with_name(f".config.toml.{self.written}")
            staged.write_text(tomlkit.dumps(document))
            os.replace(staged, self.config)

    def check(self) -> None:
        found = self.token()
        if found != self.written:
            self.reverted.append((self.written, f"glrt-{found:04d}"))

    @contextmanager
    def running(self) -> Iterator[Runner]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.check()


def converge(tmp_path: Path, name: str, registry: str) -> subprocess.CompletedProcess[str]:
    """gitlab_runner_ecr's converge task on this machine, for config.toml in `tmp_path`."""
    options = runner_options(
        registry,
        config_path=str(tmp_path / "config.toml"),
        env_path=str(tmp_path / "runner.env"),
        container=True,
        userdata_path="",
    )
    play = [{
        "name": "Converge the runner", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Converge", "ecrkit.ecr.converge": {"role": "gitlab_runner_ecr", "options": options}}],
    }]  # fmt: skip
    playbook = tmp_path / f"{name}.yml"
    playbook.write_text(yaml.safe_dump(play))
    python = json.dumps({"ansible_python_interpreter": sys.executable})
    return ansible_playbook("-i", "localhost,", "-c", "local", str(playbook), "-e", python)


GAVE_UP = "changed by another writer each of the 4 times it was read and planned"


def unwrapped(output: str) -> str:
    """The output with each run of whitespace as one space: ansible-core before 2.19 folds long messages."""
    return " ".join(output.split())


def test_no_token_the_runner_wrote_is_ever_reverted_by_concurrent_converges(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    outcomes = []
    with Runner(config, interval=0.2).running() as runner, ThreadPoolExecutor(3) as pool:
        for round_ in range(3):  # each round asks for the other registry: every converge writes
            names = [f"converge-{round_}-{n}" for n in range(3)]
            outcomes += list(pool.map(converge, [tmp_path] * 3, names, [REGISTRIES[round_ % 2]] * 3))
    assert runner.written >= 10, "the runner must have written during the converges"
    assert runner.reverted == [], f"tokens reverted by a converge: {runner.reverted}"
    for done in outcomes:  # each converge wrote, or found the file changing under it and said so
        assert done.returncode == 0 or GAVE_UP in unwrapped(done.stdout), done.stdout + done.stderr
    # With the runner quiet, the converge writes, and keeps the runner's last token.
    last = converge(tmp_path, "after", REGISTRIES[0])
    assert last.returncode == 0, last.stdout + last.stderr
    assert f'token = "glrt-{runner.written:04d}"' in config.read_text()
    assert f"{REGISTRIES[0]}" in config.read_text()


def test_a_converge_that_loses_every_race_gives_up_naming_the_file_and_overwrites_nothing(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    with Runner(config, interval=0.01).running() as runner:
        done = converge(tmp_path, "converge", REGISTRIES[0])
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{config}: {GAVE_UP}" in unwrapped(done.stdout)
    assert runner.reverted == []
    assert REGISTRIES[0] not in config.read_text()
