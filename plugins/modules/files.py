#!/usr/bin/python
"""Ansible module: make a role's planned directories and files on the host in one round trip.

The roles decide on the controller (ecrkit.plans, from what the probe saw) which paths differ;
this writes them all at once instead of one builtin file or copy task per path, each a round
trip and a task for the controller to run (bench/README.md, figure (c)). The writes are
atomic and durable (a staged file, fsynced, renamed into place, its directory fsynced), with
owners and modes set by AnsibleModule, check and diff mode. A file that changed since the plan
read it is never replaced (O(files[].expected_sha256)): GitLab Runner rewrites its own config.toml.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: files
short_description: Directories and whole files, exactly as planned, in one round trip
version_added: 0.1.0
author: ecrkit maintainers (@ecrkit)
description:
  - Creates each directory and sets its owner, group and mode; then writes each file whose content
    differs (to a temporary file in the same directory, flushed to disk, moved into place
    atomically, then the directory flushed) and sets its owner, group and mode. After a crash or a
    power loss the path holds the old content or the new, never an empty or partial file.
  - Compare before write. A file given O(files[].expected_sha256) is replaced only while it still
    holds what the plan was made from. Every file is checked before anything is written, and
    each again just before its rename, so the only window left for another writer is between
    that last read and the rename (microseconds; POSIX has no compare-and-rename). A file that
    changed fails the call, naming it in RV(conflicts), and is left as the other writer left it.
  - A write that fails (no space left, a read-only file system, permission, quota) names the
    file and the system's error; the old file stays intact and no staged file is left behind.
  - The roles call it with what their plan says must change, so that one task does what a
    builtin M(ansible.builtin.file) or M(ansible.builtin.copy) task per path would.
  - Contents are part of the task's arguments and of its diff, as with M(ansible.builtin.copy);
    run the task with C(no_log) and O(files[].diff=false) where they hold secrets (the
    C(ecrkit.ecr.converge) action does, and shows a redacted diff instead).
options:
  directories:
    description: Directories to create (with any missing parents, as M(ansible.builtin.file) does) or correct, in order.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      owner: &owner
        description: Owner's name; left as it is when unset.
        type: str
      group: &group
        description: Group's name; left as it is when unset.
        type: str
      mode: &mode
        description: Octal mode such as C('0700'); left as it is when unset.
        type: str
  files:
    description: Files to write or correct, after the directories.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path; its directory must exist.
        type: path
        required: true
      content:
        description:
          - The whole content, as text.
          - Exactly one of O(files[].content), O(files[].content_base64) and O(files[].src).
        type: str
      content_base64:
        description: The whole content, base64-encoded, for a small binary file (an archive); shown in no diff.
        type: str
      src:
        description:
          - A file on the host whose bytes are the content (a binary the C(ecrkit.ecr.converge) action
            copied there); it is left in place. Shown in no diff.
        type: path
      diff:
        description: Show this file's change in diff mode; V(false) for contents that hold secrets.
        type: bool
        default: true
      owner: *owner
      group: *group
      mode: *mode
      backup:
        description: Keep the file it replaces, as the builtin copy module does.
        type: bool
        default: false
      expected_sha256:
        description:
          - The sha256 of the content the new content was planned from, V('') if the plan found no file.
          - When the file holds anything else, someone changed it since it was read, and it is not
            replaced (see RV(conflicts)). Unset, the file is replaced whatever it holds.
        type: str
  then_run:
    description:
      - Commands run after every write (each an argv, without a shell), not in check mode; their
        answers are RV(commands). Such as a shipped binary asked its version, which would otherwise be
        a module call of its own.
    type: list
    elements: list
    default: []
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports what would change and changes nothing.
  diff_mode:
    support: full
    details: One diff per file whose content changes; a changed owner or mode shows in RV(changed_paths).
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Write ~/.docker and config.json for root
  ecrkit.ecr.files:
    directories:
      - {path: /root/.docker, owner: root, group: root, mode: "0700"}
    files:
      - path: /root/.docker/config.json
        content: '{"credHelpers": {"123456789012.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"}}'
        owner: root
        group: root
        mode: "0600"
"""

RETURN = r"""
changed_paths:
  description: The paths created or changed (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [/root/.docker, /root/.docker/config.json]
backups:
  description: Where each replaced file was kept, by path, for files with O(files[].backup).
  returned: always
  type: dict
  sample: {/root/.docker/config.json: "/root/.docker/config.json.1234.2026-12-03@16:50:00~"}
commands:
  description: What each of O(then_run) answered, in its order (none in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{"argv": ["/usr/bin/docker-credential-ecr-login", "-v"], "rc": 0, "stdout": "0.9.1\n", "stderr": ""}]
conflicts:
  description:
    - The files that no longer held their O(files[].expected_sha256), when the call failed for them.
    - Nothing was written if they were found before the first write; otherwise RV(changed_paths) says what was.
  returned: failure
  type: list
  elements: str
  sample: [/etc/gitlab-runner/config.toml]
"""

import base64  # noqa: E402 - Ansible modules put DOCUMENTATION first
import errno  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

ATTRIBUTES = {"owner": {"type": "str"}, "group": {"type": "str"}, "mode": {"type": "str"}}


def _attributes(module: AnsibleModule, path: str, wanted: dict[str, Any]) -> dict[str, Any]:
    """What AnsibleModule.set_fs_attributes_if_different takes for `path`, from a planned entry."""
    attributes: dict[str, Any] = module.load_file_common_arguments(
        {"path": path, **{k: wanted.get(k) for k in ATTRIBUTES}}
    )
    return attributes


def _failed(path: str, exc: OSError) -> str:
    """The file and the system's own words for why it could not be written (no space, read-only...)."""
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"{path}: not written: {exc.strerror or exc}{f' ({name})' if name else ''}; the file was left as it was"


def _sync_directory(path: str) -> None:
    """Flush a directory's entries, so that a rename or a new entry in it survives a power loss."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sync_file(path: str) -> None:
    with open(path, "rb") as written:
        os.fsync(written.fileno())


def _directory(module: AnsibleModule, wanted: dict[str, Any]) -> bool:
    path = wanted["path"]
    changed = False
    if not os.path.isdir(path):
        if os.path.lexists(path):
            module.fail_json(msg=f"{path}: exists and is not a directory; remove it or choose another path")
        changed = True
        if module.check_mode:
            return True
        # Missing parents as the builtin file module makes them (umask); the planned mode follows.
        try:
            os.makedirs(path, 0o700)
            _sync_directory(os.path.dirname(path))
        except OSError as exc:
            module.fail_json(msg=_failed(path, exc))
    return bool(module.set_fs_attributes_if_different(_attributes(module, path, wanted), changed))


def _current(module: AnsibleModule, path: str) -> bytes | None:
    if not os.path.lexists(path):
        return None
    if not os.path.isfile(path):
        module.fail_json(msg=f"{path}: exists and is not a regular file; remove it or choose another path")
    try:
        with open(path, "rb") as current:
            return current.read()
    except FileNotFoundError:  # renamed away by another writer between the two looks
        return None
    except OSError as exc:
        module.fail_json(msg=f"{path}: cannot be read ({exc.strerror})")
        raise  # not reached: fail_json exits


def _content(module: AnsibleModule, wanted: dict[str, Any]) -> bytes:
    if wanted.get("content_base64") is not None:
        try:
            return base64.b64decode(wanted["content_base64"], validate=True)
        except ValueError:
            module.fail_json(msg=f"{wanted['path']}: content_base64 is not base64")
    if wanted["src"] is None:
        return str(wanted["content"]).encode()
    try:
        with open(wanted["src"], "rb") as source:
            return source.read()
    except OSError as exc:
        module.fail_json(msg=f"{wanted['path']}: its source {wanted['src']} cannot be read ({exc.strerror})")
        raise  # not reached: fail_json exits


def _digest(content: bytes | None) -> str:
    return "" if content is None else hashlib.sha256(content).hexdigest()


def _conflict(module: AnsibleModule, paths: list[str], changed_paths: list[str]) -> None:
    module.fail_json(
        msg=f"{', '.join(paths)}: changed since it was read (another writer, such as GitLab Runner refreshing a "
        "token); left as that writer left it" + ("" if changed_paths else ", and nothing was written"),
        conflicts=paths,
        changed=bool(changed_paths),
        changed_paths=changed_paths,
    )


class Planned:
    """One planned file, read once before any write: its new content and what it holds now."""

    def __init__(self, module: AnsibleModule, wanted: dict[str, Any]) -> None:
        self.wanted = wanted
        self.path: str = wanted["path"]
        self.content = _content(module, wanted)
        self.before = _current(module, self.path)
        expected = wanted.get("expected_sha256")
        self.conflict = expected is not None and _digest(self.before) != expected


def _file(
    module: AnsibleModule,
    planned: Planned,
    backups: dict[str, str],
    diffs: list[dict[str, str]],
    changed_paths: list[str],
) -> bool:
    wanted, path, content, before = planned.wanted, planned.path, planned.content, planned.before
    directory = os.path.dirname(path)
    changed = before != content
    if changed and not module.check_mode and not os.path.isdir(directory):
        module.fail_json(msg=f"{path}: its directory {directory} does not exist")
    if changed and module._diff and wanted["diff"] and wanted["content"] is not None:
        shown = "" if before is None else before.decode(errors="replace")
        diffs.append({"before_header": path, "after_header": path, "before": shown, "after": wanted["content"]})
    if changed and not module.check_mode:
        _replace(module, planned, backups, changed_paths)
    if module.check_mode and before is None:
        return True
    return bool(module.set_fs_attributes_if_different(_attributes(module, path, wanted), changed))


def _replace(module: AnsibleModule, planned: Planned, backups: dict[str, str], changed_paths: list[str]) -> None:
    """Stage the new content beside the file with its owner and mode, flush it, check that the file
    still holds what was read, rename, flush the directory; any OSError names the file."""
    wanted, path = planned.wanted, planned.path
    directory = os.path.dirname(path)
    staged = ""
    try:
        if wanted.get("backup") and planned.before is not None:
            backups[path] = module.backup_local(path)
            _sync_file(backups[path])
        descriptor, staged = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
        with os.fdopen(descriptor, "wb") as temporary:
            temporary.write(planned.content)
            # The planned owner and mode go on the staged file and a rename in the same directory
            # swaps it in, so the path never holds the new content with other modes (atomic_move
            # would give it the old file's modes, or the umask's, until they are set again).
            module.set_fs_attributes_if_different(_attributes(module, staged, wanted), True)
            temporary.flush()
            os.fsync(temporary.fileno())  # data and inode on disk before the name points at them
        if wanted.get("expected_sha256") is not None and _current(module, path) != planned.before:
            _conflict(module, [path], changed_paths)  # rewritten while we staged: theirs stays
        os.replace(staged, path)
        staged = ""
    except OSError as exc:
        module.fail_json(msg=_failed(path, exc), changed=bool(changed_paths), changed_paths=changed_paths)
    finally:
        if staged and os.path.lexists(staged):
            os.unlink(staged)
    try:
        _sync_directory(directory)
    except OSError as exc:
        module.fail_json(msg=f"{path}: replaced, but its directory could not be flushed ({exc.strerror})",
                         changed=True, changed_paths=[*changed_paths, path])  # fmt: skip


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "directories": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {"path": {"type": "path", "required": True}, **ATTRIBUTES},
            },
            "files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    "content": {"type": "str"},
                    "content_base64": {"type": "str"},
                    "src": {"type": "path"},
                    "diff": {"type": "bool", "default": True},
                    "backup": {"type": "bool", "default": False},
                    "expected_sha256": {"type": "str"},
                    **ATTRIBUTES,
                },
                "mutually_exclusive": [["content", "content_base64", "src"]],
                "required_one_of": [["content", "content_base64", "src"]],
            },
            "then_run": {"type": "list", "elements": "list", "default": []},
        },
        supports_check_mode=True,
    )
    changed_paths: list[str] = []
    backups: dict[str, str] = {}
    diffs: list[dict[str, str]] = []
    # Every file is read, and compared with what its plan read, before anything is written.
    planned = [Planned(module, wanted) for wanted in module.params["files"]]
    conflicts = [item.path for item in planned if item.conflict]
    if conflicts:
        _conflict(module, conflicts, [])
    for wanted in module.params["directories"]:
        if _directory(module, wanted):
            changed_paths.append(wanted["path"])
    for item in planned:
        if _file(module, item, backups, diffs, changed_paths):
            changed_paths.append(item.path)
    commands = []
    for given in [] if module.check_mode else module.params["then_run"]:
        argv = [str(arg) for arg in given]
        rc, stdout, stderr = module.run_command(argv)
        commands.append({"argv": argv, "rc": rc, "stdout": stdout, "stderr": stderr})
    module.exit_json(changed=bool(changed_paths), changed_paths=changed_paths, backups=backups, diff=diffs,
                     commands=commands)  # fmt: skip


if __name__ == "__main__":
    main()
