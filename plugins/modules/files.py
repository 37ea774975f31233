#!/usr/bin/python
"""Ansible module: make a role's planned directories and files on the host in one round trip.

The roles decide on the controller (ecrkit.plans, from what the probe saw) which paths differ;
this writes them all at once instead of one builtin file or copy task per path, each a round
trip and a task for the controller to run (bench/README.md, figure (c)). The writes are
atomic (a staged file renamed into place), with owners and modes set by AnsibleModule, check and diff mode.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: files
short_description: Directories and whole files, exactly as planned, in one round trip
version_added: 0.1.0
author: ecrkit maintainers (@ecrkit)
description:
  - Creates each directory and sets its owner, group and mode; then writes each file whose content
    differs (to a temporary file in the same directory, moved into place atomically) and sets its
    owner, group and mode.
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
        description: The whole content, as text. Exactly one of O(files[].content) and O(files[].src).
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
"""

import os  # noqa: E402 - Ansible modules put DOCUMENTATION first
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
        os.makedirs(path, 0o700)
    return bool(module.set_fs_attributes_if_different(_attributes(module, path, wanted), changed))


def _current(module: AnsibleModule, path: str) -> bytes | None:
    if not os.path.lexists(path):
        return None
    if not os.path.isfile(path):
        module.fail_json(msg=f"{path}: exists and is not a regular file; remove it or choose another path")
    with open(path, "rb") as current:
        return current.read()


def _content(module: AnsibleModule, wanted: dict[str, Any]) -> bytes:
    if wanted["src"] is None:
        return str(wanted["content"]).encode()
    try:
        with open(wanted["src"], "rb") as source:
            return source.read()
    except OSError as exc:
        module.fail_json(msg=f"{wanted['path']}: its source {wanted['src']} cannot be read ({exc.strerror})")
        raise  # not reached: fail_json exits


def _file(module: AnsibleModule, wanted: dict[str, Any], backups: dict[str, str], diffs: list[dict[str, str]]) -> bool:
    path, content = wanted["path"], _content(module, wanted)
    directory = os.path.dirname(path)
    before = _current(module, path)
    changed = before != content
    if changed and not module.check_mode and not os.path.isdir(directory):
        module.fail_json(msg=f"{path}: its directory {directory} does not exist")
    if changed and module._diff and wanted["diff"] and wanted["src"] is None:
        shown = "" if before is None else before.decode(errors="replace")
        diffs.append({"before_header": path, "after_header": path, "before": shown, "after": wanted["content"]})
    if changed and not module.check_mode:
        if wanted.get("backup") and before is not None:
            backups[path] = module.backup_local(path)
        descriptor, staged = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
        try:
            with os.fdopen(descriptor, "wb") as temporary:
                temporary.write(content)
            # The planned owner and mode go on the staged file and a rename in the same directory
            # swaps it in, so the path never holds the new content with other modes (atomic_move
            # would give it the old file's modes, or the umask's, until they are set again).
            module.set_fs_attributes_if_different(_attributes(module, staged, wanted), True)
            os.replace(staged, path)
        finally:
            if os.path.lexists(staged):
                os.unlink(staged)
    if module.check_mode and before is None:
        return True
    return bool(module.set_fs_attributes_if_different(_attributes(module, path, wanted), changed))


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
                    "src": {"type": "path"},
                    "diff": {"type": "bool", "default": True},
                    "backup": {"type": "bool", "default": False},
                    **ATTRIBUTES,
                },
                "mutually_exclusive": [["content", "src"]],
                "required_one_of": [["content", "src"]],
            },
        },
        supports_check_mode=True,
    )
    changed_paths: list[str] = []
    backups: dict[str, str] = {}
    diffs: list[dict[str, str]] = []
    for wanted in module.params["directories"]:
        if _directory(module, wanted):
            changed_paths.append(wanted["path"])
    for wanted in module.params["files"]:
        if _file(module, wanted, backups, diffs):
            changed_paths.append(wanted["path"])
    module.exit_json(changed=bool(changed_paths), changed_paths=changed_paths, backups=backups, diff=diffs)


if __name__ == "__main__":
    main()
