#!/usr/bin/python
"""Observe a host in one round trip and print JSON facts; change nothing. Standard library only.

Two ways to run it:
- as an Ansible module (`ecrkit_probe`): Ansible embeds the task's arguments below;
- as a script: `python3 ecrkit_probe.py < args.json`, e.g. over SSH (the shebang is the
  one Ansible rewrites to the host's discovered interpreter).

Arguments (all optional):
  users:      user names -> passwd entry with the primary group's name, or null if missing
  paths:      absolute paths -> type, mode, owner, group, sha256 (files); exists false if missing
  user_paths: paths relative to each user's home, probed like `paths` (key "<user>:<relative>")
  read:       paths (absolute, or "<user>:<relative>") whose content is returned as base64
  commands:   argv lists -> rc, stdout, stderr (not through a shell)
"""

from __future__ import annotations

import base64
import grp
import hashlib
import json
import os
import pwd
import stat
import subprocess
import sys
from typing import Any

# Ansible replaces this marker with the task's arguments as JSON (a raw string keeps its
# escapes; JSON cannot contain three unescaped quotes in a row). Run as a script, it stays.
ANSIBLE_ARGUMENTS = r"""<<INCLUDE_ANSIBLE_MODULE_JSON_ARGS>>"""
MARKER_START = "<" + "<INCLUDE_ANSIBLE"


def user_entry(name: str) -> dict[str, object] | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return {
        "uid": entry.pw_uid,
        "gid": entry.pw_gid,
        "group": group_name(entry.pw_gid),
        "home": entry.pw_dir,
        "shell": entry.pw_shell,
    }


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def path_state(path: str) -> dict[str, object]:
    try:
        info = os.stat(path)  # follows links: what matters is what a caller of the path gets
    except FileNotFoundError:
        return {"path": path, "exists": False}
    except OSError as exc:
        return {"path": path, "exists": None, "error": exc.strerror}
    kinds = {stat.S_IFREG: "file", stat.S_IFDIR: "directory"}
    state: dict[str, object] = {
        "path": path,
        "exists": True,
        "type": kinds.get(stat.S_IFMT(info.st_mode), "other"),
        "mode": f"{stat.S_IMODE(info.st_mode):04o}",
        "owner": user_name(info.st_uid),
        "group": group_name(info.st_gid),
    }
    if state["type"] == "file":
        try:
            state["sha256"] = sha256(path)
        except OSError as exc:
            state["error"] = exc.strerror
    return state


def run(argv: list[str]) -> dict[str, object]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"argv": argv, "rc": None, "stdout": "", "stderr": str(exc)}
    return {"argv": argv, "rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def probe(args: dict[str, Any]) -> dict[str, object]:
    users = {name: user_entry(name) for name in args.get("users") or []}
    resolved: dict[str, str] = {path: path for path in args.get("paths") or []}
    for name, entry in users.items():
        if entry is not None:
            for relative in args.get("user_paths") or []:
                resolved[f"{name}:{relative}"] = os.path.join(str(entry["home"]), relative)
    paths = {key: path_state(path) for key, path in resolved.items()}
    contents: dict[str, str | None] = {}
    for key in args.get("read") or []:
        path = resolved.get(key, key)
        try:
            with open(path, "rb") as handle:
                contents[key] = base64.b64encode(handle.read()).decode("ascii")
        except FileNotFoundError:
            contents[key] = None
    commands = [run(list(argv)) for argv in args.get("commands") or []]
    return {"changed": False, "users": users, "paths": paths, "contents": contents, "commands": commands}


def main() -> int:
    if ANSIBLE_ARGUMENTS.startswith(MARKER_START):
        text = sys.stdin.read() if not sys.stdin.isatty() else ""
        args = json.loads(text) if text.strip() else {}
    else:
        args = {k: v for k, v in json.loads(ANSIBLE_ARGUMENTS).items() if not k.startswith("_ansible")}
    print(json.dumps(probe(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
