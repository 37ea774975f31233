"""The ecrkit.ecr.files module, run by Ansible as the roles run it (here on the controller itself,
in a temporary directory): one call makes every planned directory and file, idempotently, in
check and diff mode, atomically, and stops on a path it must not replace."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from testbed.hosts import ANSIBLE_ENV, BIN, ROOT
from tests.conftest import Syscall, assert_durable, fill, read_only, traced


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
    assert "mutually exclusive: content|content_base64|src" in both["msg"]
    assert "one of the following is required: content, content_base64, src" in neither["msg"]
    assert not (tmp_path / "home").exists()


# --- compare before write: a file someone changed since it was read is theirs --------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_file_changed_since_it_was_read_is_left_to_its_writer_and_nothing_is_written(tmp_path: Path) -> None:
    run_files(planned(tmp_path))
    config = tmp_path / "home" / ".docker" / "config.json"
    other = tmp_path / "other.conf"
    other.write_text("old\n")
    config.write_text('{"runner": "wrote this after the plan read the file"}\n')
    arguments = planned(tmp_path, "planned from the old content\n")
    arguments["files"][0]["expected_sha256"] = _sha256('{"credHelpers": {}}\n')  # what the plan read
    arguments["files"].insert(0, {"path": str(other), "content": "new\n", "expected_sha256": _sha256("old\n")})
    arguments["directories"].append({"path": str(tmp_path / "new-directory")})
    result = run_files(arguments)
    assert result["failed"] is True and result["conflicts"] == [str(config)]
    assert result["msg"].startswith(f"{config}: changed since it was read")
    assert "nothing was written" in result["msg"]
    assert config.read_text() == '{"runner": "wrote this after the plan read the file"}\n'
    assert other.read_text() == "old\n"  # every file is compared before any is written
    assert not (tmp_path / "new-directory").exists()


def test_a_file_that_still_holds_what_was_read_is_replaced(tmp_path: Path) -> None:
    run_files(planned(tmp_path))
    arguments = planned(tmp_path, "new\n")
    arguments["files"][0]["expected_sha256"] = _sha256('{"credHelpers": {}}\n')
    assert run_files(arguments)["changed"] is True
    assert (tmp_path / "home" / ".docker" / "config.json").read_text() == "new\n"


def test_a_file_that_appeared_since_the_plan_found_none_is_not_replaced(tmp_path: Path) -> None:
    arguments = planned(tmp_path)
    arguments["files"][0]["expected_sha256"] = ""  # the plan found no file
    (tmp_path / "home" / ".docker").mkdir(parents=True)
    config = tmp_path / "home" / ".docker" / "config.json"
    config.write_text("someone else's\n")
    assert run_files(arguments)["conflicts"] == [str(config)]
    assert config.read_text() == "someone else's\n"
    config.unlink()
    assert run_files(arguments)["changed"] is True  # with no file there, the plan holds


# --- durable: flushed before the rename, the directory after -------------------------------------


def test_every_write_is_flushed_before_its_rename_and_its_directory_after(tmp_path: Path) -> None:
    run_files(planned(tmp_path))
    arguments = planned(tmp_path, "new\n")
    arguments["files"][0]["backup"] = True
    command = [str(BIN / "ansible"), "localhost", "-c", "local", "-m", "ecrkit.ecr.files", "-a", json.dumps(arguments)]
    calls = traced(command, tmp_path / "strace.log", env=ANSIBLE_ENV, cwd=ROOT)
    assert_durable(calls, tmp_path / "home" / ".docker" / "config.json")


def test_the_check_holds_only_a_real_rename(tmp_path: Path) -> None:
    """Negative control: a rename with neither fsync is refused by assert_durable."""
    calls = [Syscall("rename", (str(tmp_path / ".x.staged"), str(tmp_path / "x")))]
    with pytest.raises(AssertionError, match="without an fsync first"):
        assert_durable(calls, tmp_path / "x")
    calls.insert(0, Syscall("fsync", (str(tmp_path / ".x.staged"),)))
    with pytest.raises(AssertionError, match="was not fsynced after the rename"):
        assert_durable(calls, tmp_path / "x")


# --- a failed write names the file and the error; the old file stays, nothing staged is left ------


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_write_the_file_system_refuses_names_the_file_and_the_error(tiny_tmpfs: Path, fault: str) -> None:
    config = tiny_tmpfs / "config.toml"
    config.write_text("concurrent = 1\n")
    fill(tiny_tmpfs) if fault == "full" else read_only(tiny_tmpfs)
    result = run_files({"files": [{"path": str(config), "content": "concurrent = 2\n" * 64}]})
    said = "No space left on device (ENOSPC)" if fault == "full" else "Read-only file system (EROFS)"
    assert result["failed"] is True
    assert result["msg"] == f"{config}: not written: {said}; the file was left as it was"
    assert config.read_text() == "concurrent = 1\n"
    assert sorted(os.listdir(tiny_tmpfs)) == sorted(["config.toml", *([".filler"] if fault == "full" else [])])


def test_a_binary_file_is_written_from_base64_and_shown_in_no_diff(tmp_path: Path) -> None:
    archive = tmp_path / "docker.tar.gz"
    data = bytes(range(256))
    entry = {"path": str(archive), "content_base64": base64.b64encode(data).decode(), "mode": "0644"}
    result = run_files({"files": [entry]}, "--diff")
    assert result["changed"] is True and result["diff"] == [] and archive.read_bytes() == data
    assert run_files({"files": [entry]})["changed"] is False
    bad = run_files({"files": [{**entry, "content_base64": "not base64!"}]})
    assert bad["failed"] is True and bad["msg"] == f"{archive}: content_base64 is not base64"
