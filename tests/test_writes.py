"""Every file ecrkit writes, on a host or for the CLI's user, is durable and never half-written:
the converge action (through the files module), `render runner-config --in-place` and
`render docker-tar -o`. A write the file system refuses names the file and the system's error,
leaves the old file as it was and no staged file behind."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from ecrkit import files
from ecrkit.errors import PathError
from testbed.hosts import ANSIBLE_ENV, BIN, ROOT, ansible_playbook
from tests.conftest import ECRKIT, assert_durable, fill, read_only, run_ecrkit, traced

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
OLD_CONFIG = '[[runners]]\n  name = "docker-jobs"\n  token = "glrt-0001"\n  executor = "docker"\n'
SAID = {"full": "No space left on device", "read-only": "read-only file system"}


def _converge_play(tmp_path: Path, path: Path) -> list[str]:
    """registries_conf's converge task writing `path`: ansible-playbook's arguments."""
    options = {"registry": ECR, "cache_prefix": "docker-hub", "upstream": "docker.io", "path": str(path)}
    play = [{
        "name": "Converge", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Mirror entry", "ecrkit.ecr.converge": {"role": "registries_conf", "options": options}}],
    }]  # fmt: skip
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play))
    return ["-i", "localhost,", "-c", "local", str(playbook), "-e",
            json.dumps({"ansible_python_interpreter": sys.executable})]  # fmt: skip


def _left(mount: Path) -> list[str]:
    return sorted(name for name in os.listdir(mount) if name != ".filler")


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_converge_the_file_system_refuses_names_the_file_and_the_error(
    tmp_path: Path, tiny_tmpfs: Path, fault: str
) -> None:
    written = tiny_tmpfs / "50-ecrkit-mirror.conf"
    written.write_text("# the old entry\n")
    fill(tiny_tmpfs) if fault == "full" else read_only(tiny_tmpfs)
    done = ansible_playbook(*_converge_play(tmp_path, written))
    assert done.returncode == 2
    said = " ".join(done.stdout.split())  # ansible-core before 2.19 folds long messages
    assert f"{written}: not written: " in said and SAID[fault].lower() in said.lower(), done.stdout
    assert written.read_text() == "# the old entry\n"
    assert _left(tiny_tmpfs) == [written.name]


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_the_clis_writes_the_file_system_refuses_name_the_file_and_the_error(tiny_tmpfs: Path, fault: str) -> None:
    config, archive = tiny_tmpfs / "config.toml", tiny_tmpfs / "docker.tar.gz"
    config.write_text(OLD_CONFIG)
    archive.write_bytes(b"old archive")
    fill(tiny_tmpfs) if fault == "full" else read_only(tiny_tmpfs)
    in_place = run_ecrkit("render", "runner-config", "--config", str(config), "--registry", ECR, "--in-place")
    tar = run_ecrkit("render", "docker-tar", "--registry", ECR, "-o", str(archive))
    for done, option, path in ((in_place, "--config", config), (tar, "--output", archive)):
        assert done.returncode == 2, done.stderr
        assert f"{option} {path}: " in done.stderr and SAID[fault] in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert config.read_text() == OLD_CONFIG and archive.read_bytes() == b"old archive"
    assert _left(tiny_tmpfs) == sorted([config.name, archive.name])


def test_every_write_is_flushed_before_its_rename_and_its_directory_after(tmp_path: Path) -> None:
    config, archive, entry = tmp_path / "config.toml", tmp_path / "docker.tar.gz", tmp_path / "mirror.conf"
    config.write_text(OLD_CONFIG)
    log = tmp_path / "strace.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    in_place = [*ECRKIT, "render", "runner-config", "--config", str(config), "--registry", ECR, "--in-place"]
    assert_durable(traced(in_place, log, env=env, cwd=ROOT), config)
    assert_durable(
        traced([*ECRKIT, "render", "docker-tar", "--registry", ECR, "-o", str(archive)], log, env=env), archive
    )
    converge = [str(BIN / "ansible-playbook"), *_converge_play(tmp_path, entry)]
    assert_durable(traced(converge, log, env=ANSIBLE_ENV, cwd=ROOT), entry)


def test_a_file_changed_since_it_was_read_is_not_replaced_by_the_cli_writer(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(OLD_CONFIG)
    read = files.read_bytes(str(config), "--config")
    config.write_text(OLD_CONFIG.replace("glrt-0001", "glrt-0002"))  # the runner refreshed its token
    with pytest.raises(PathError, match="changed since it was read"):
        files.write_atomic(
            str(config), "merged\n", mode=0o600, source="--config", expected_sha256=files.sha256_of(read)
        )
    assert "glrt-0002" in config.read_text() and os.listdir(tmp_path) == [config.name]
    files.write_atomic(str(config), "merged\n", mode=0o600, expected_sha256=files.sha256_of(config.read_bytes()))
    assert config.read_text() == "merged\n"
