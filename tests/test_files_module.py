"""The ecrkit.ecr.files module, run by Ansible as the roles run it (here on the controller itself,
in a temporary directory): one call makes every planned directory and file, idempotently, in
check and diff mode, atomically, and stops on a path it must not replace."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

from ecrkit.testbed import ANSIBLE_ENV, BIN, ROOT


def run_files(arguments: dict[str, Any], *flags: str) -> dict[str, Any]:
    """One ad-hoc call of the module; its JSON result."""
    command = [str(BIN / "ansible"), "localhost", "-c", "local", "-m", "ecrkit.ecr.files", "-a", json.dumps(arguments)]
    json_output = {"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json"}
    done = subprocess.run(
        [*command, *flags], capture_output=True, text=True, cwd=ROOT, env={**ANSIBLE_ENV, **json_output}, check=False
    )
    result: dict[str, Any] = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result


def _mode(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"


def planned(tmp_path: Path, content: str = '{"credHelpers": {}}\n') -> dict[str, Any]:
    directory = tmp_path / "home" / ".docker"
    return {
        "directories": [{"path": str(directory), "owner": "root", "group": "root", "mode": "0700"}],
        "files": [{"path": str(directory / "config.json"), "content": content, "owner": "root", "mode": "0600"}],
    }


def test_one_call_makes_every_directory_and_file_then_changes_nothing(tmp_path: Path) -> None:
    first = run_files(planned(tmp_path))
    config = tmp_path / "home" / ".docker" / "config.json"
    assert first["changed"] is True
    assert first["changed_paths"] == [str(tmp_path / "home" / ".docker"), str(config)]
    assert config.read_text() == '{"credHelpers": {}}\n'
    assert (_mode(tmp_path / "home" / ".docker"), _mode(config)) == ("0700", "0600")
    again = run_files(planned(tmp_path))
    assert again["changed"] is False and again["changed_paths"] == []


def test_a_wrong_mode_alone_is_corrected(tmp_path: Path) -> None:
    run_files(planned(tmp_path))
    config = tmp_path / "home" / ".docker" / "config.json"
    config.chmod(0o644)
    result = run_files(planned(tmp_path))
    assert result["changed_paths"] == [str(config)]
    assert _mode(config) == "0600"


def test_check_mode_reports_and_changes_nothing(tmp_path: Path) -> None:
    result = run_files(planned(tmp_path), "--check")
    assert result["changed"] is True
    assert not (tmp_path / "home" / ".docker").exists()
    run_files(planned(tmp_path))
    result = run_files(planned(tmp_path, '{"credHelpers": {"x": "ecr-login"}}\n'), "--check")
    assert result["changed_paths"] == [str(tmp_path / "home" / ".docker" / "config.json")]
    assert (tmp_path / "home" / ".docker" / "config.json").read_text() == '{"credHelpers": {}}\n'


def test_diff_mode_shows_each_changed_file(tmp_path: Path) -> None:
    run_files(planned(tmp_path))
    result = run_files(planned(tmp_path, '{"credHelpers": {"x": "ecr-login"}}\n'), "--diff")
    config = str(tmp_path / "home" / ".docker" / "config.json")
    assert result["diff"] == [
        {
            "before_header": config,
            "after_header": config,
            "before": '{"credHelpers": {}}\n',
            "after": '{"credHelpers": {"x": "ecr-login"}}\n',
        }
    ]


def test_a_replaced_file_is_swapped_in_whole_and_kept_when_asked(tmp_path: Path) -> None:
    run_files(planned(tmp_path))
    arguments = planned(tmp_path, "new\n")
    arguments["files"][0]["backup"] = True
    result = run_files(arguments)
    config = tmp_path / "home" / ".docker" / "config.json"
    backup = Path(result["backups"][str(config)])
    assert backup.read_text() == '{"credHelpers": {}}\n'
    assert config.read_text() == "new\n" and _mode(config) == "0600"
    # Nothing staged is left beside it.
    assert sorted(os.listdir(tmp_path / "home" / ".docker")) == sorted(["config.json", backup.name])


def test_a_path_of_the_wrong_kind_stops_the_call_and_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".docker").write_text("not a directory")
    result = run_files(planned(tmp_path))
    assert result.get("failed") is True
    in_the_way = tmp_path / "home" / ".docker"
    assert result["msg"] == f"{in_the_way}: exists and is not a directory; remove it or choose another path"
    assert (tmp_path / "home" / ".docker").read_text() == "not a directory"


def test_a_file_from_src_is_installed_from_its_bytes_and_shown_in_no_diff(tmp_path: Path) -> None:
    binary = tmp_path / "shipped"
    binary.write_bytes(bytes(range(256)) * 64)  # not text: a binary the converge action copied
    target = tmp_path / "bin" / "docker-credential-ecr-login"
    entry = {"path": str(target), "src": str(binary), "owner": "root", "mode": "0755"}
    arguments = {"directories": [{"path": str(target.parent), "mode": "0755"}], "files": [entry]}
    result = run_files(arguments, "--diff")
    assert result["changed_paths"] == [str(target.parent), str(target)]
    assert result["diff"] == []
    assert target.read_bytes() == binary.read_bytes() and _mode(target) == "0755"
    assert binary.exists()  # the action's temporary directory is the action's to remove
    assert run_files(arguments)["changed"] is False


def test_a_file_without_its_diff_changes_but_shows_no_content(tmp_path: Path) -> None:
    run_files(planned(tmp_path))
    arguments = planned(tmp_path, '{"auths": {"ghcr.io": {"auth": "c2VjcmV0"}}}\n')
    arguments["files"][0]["diff"] = False
    result = run_files(arguments, "--diff")
    assert result["changed"] is True and result["diff"] == []
    assert "c2VjcmV0" not in json.dumps({key: value for key, value in result.items() if key != "invocation"})


def test_content_and_src_are_one_or_the_other(tmp_path: Path) -> None:
    arguments = planned(tmp_path)
    arguments["files"][0]["src"] = str(tmp_path / "x")
    both = run_files(arguments)
    del arguments["files"][0]["src"], arguments["files"][0]["content"]
    neither = run_files(arguments)
    assert "mutually exclusive: content|src" in both["msg"]
    assert "one of the following is required: content, src" in neither["msg"]
    assert not (tmp_path / "home").exists()
