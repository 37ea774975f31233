"""Action plugin: a role's whole converge in one task (module documentation: plugins/modules/converge.py).

It probes the host (ecrkit.ecr.probe), decides on the controller (ecrkit.converge, the package's
plans), copies any controller file the plan ships, and writes every directory and file that
differs in one ecrkit.ecr.files call. On a host already as planned that is one round trip and
one task, where a probe, a decision and a write were each a task (bench/README.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

if TYPE_CHECKING:
    from ecrkit.probe_facts import ProbeResult

try:
    from ecrkit import converge
    from ecrkit.constants import ROLE_DEFAULTS, role_default
    from ecrkit.errors import EcrkitError

    _MISSING = ""
except ImportError as missing:  # pragma: no cover - depends on the controller's Python
    from ansible_collections.ecrkit.ecr.plugins.plugin_utils.package import missing_package

    _MISSING = missing_package("the ecrkit.ecr roles", missing)
    converge = None  # type: ignore[assignment]
    ROLE_DEFAULTS, role_default = {}, None  # type: ignore[assignment,misc]

    class EcrkitError(Exception):  # type: ignore[no-redef]  # named by except clauses
        pass


# A role default that only asks the package, as defaults/main.yml writes it.
_PACKAGE_DEFAULT = re.compile(r"\{\{ '(\w+)' \| ecrkit\.ecr\.default \}\}")
_UNSET = object()


class ActionModule(ActionBase):  # type: ignore[misc]  # ansible has no type information
    TRANSFERS_FILES = False  # a remote temporary directory only when a file is shipped
    _VALID_ARGS = frozenset(("role", "options"))
    _requires_connection = True
    _quiet = False  # set while the files call writes contents that hold secrets: _ansible_no_log

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        if converge is None:
            raise AnsibleActionFail(_MISSING)
        try:
            name = str(self._task.args.get("role"))
            role = converge.role(name)
            given = self._task.args.get("options")
            options = _checked(
                role, name, self._role_variables(name, role, task_vars or {}) if given is None else given
            )
            arguments = role.probe_args(options)
            for attempt in range(converge.REPLANS + 1):
                asked = self._module("ecrkit.ecr.probe", dict(arguments), task_vars) if arguments is not None else {}
                probe = cast("ProbeResult", asked)
                changes = role.plan(probe, options)
                try:
                    result.update(self._apply(changes, probe, task_vars, role))
                    break
                except _Conflict as conflict:  # someone wrote a file after the probe read it: read it again
                    if attempt == converge.REPLANS:
                        raise AnsibleActionFail(
                            f"{', '.join(conflict.paths)}: changed by another writer each of the "
                            f"{attempt + 1} times it was read and planned (such as GitLab Runner refreshing a "
                            "token); their changes were kept and this converge gave up; run it again"
                        ) from None
        except (EcrkitError, ValueError) as exc:
            # The bad value and the variable it came from; never a file's content.
            raise AnsibleActionFail(str(exc)) from None
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _role_variables(self, name: str, role: converge.Role, task_vars: dict[str, Any]) -> dict[str, Any]:
        """Without `options`, each option is the role's variable <role>_<option>, templated here as
        Ansible templates a role's variables to check its argument spec. Ansible compiles every
        template again in each worker, and each task runs in its own: a task that named each variable
        in `options` paid a compile per option per host, and so does a role default that only asks
        the package (`'<variable>' | ecrkit.ecr.default`), which is answered here without Jinja
        (bench/README.md)."""
        variables, defaults = {}, {}
        for option in role.options:
            value = task_vars.get(f"{name}_{option}", _UNSET)
            package = _PACKAGE_DEFAULT.fullmatch(value) if isinstance(value, str) else None
            if package and package[1] in ROLE_DEFAULTS:
                defaults[option] = role_default(package[1])  # what the filter answers
            elif value is not _UNSET:
                variables[option] = value
        return {**defaults, **dict(self._templar.template(variables))}

    def _apply(
        self, changes: converge.Changes, probe: ProbeResult, task_vars: dict[str, Any] | None, role: converge.Role
    ) -> dict[str, Any]:
        files = list(changes["write"]["files"])
        for shipped in changes["ship"]:
            files.append(self._ship(shipped))
        # Each file the probe read is replaced only while it still holds what the plan was made from.
        write: dict[str, Any] = dict(
            converge.as_read({"directories": changes["write"]["directories"], "files": files}, probe)
        )
        # The role's commands run after its writes, by the write itself (in check mode none runs: each is a
        # change all the same); then what a shipped file is asked after its install, when that is commands alone.
        runs = [] if self._task.check_mode else [list(item["argv"]) for item in changes["run"]]
        after = changes["then_probe"] if changes["ship"] and not self._task.check_mode else None
        asked = after["commands"] if after and set(after) == {"commands"} else None
        if asked is not None:
            after = None
        if runs or asked:
            write["then_run"] = runs + (asked or [])
        written: dict[str, Any] = {"changed_paths": [], "backups": {}, "diff": [], "commands": []}
        if write["directories"] or write["files"] or "then_run" in write:
            self._quiet = changes["secrets"]
            try:
                written = self._module("ecrkit.ecr.files", write, task_vars)
            finally:
                self._quiet = False
        for item, answer in zip(changes["run"], written["commands"][: len(runs)], strict=False):
            if answer["rc"] != 0:  # the command and the last line it said, never what the writes held
                lines = [line.strip() for line in str(answer.get("stderr") or "").splitlines() if line.strip()]
                said = f": {lines[-1]}" if lines else ""
                raise AnsibleActionFail(f"{item['what']}: failed with exit status {answer['rc']}{said}")
        facts = dict(changes["facts"])
        if asked is not None:
            facts.update(role.after({"commands": written["commands"][len(runs) :]}))
        elif after:
            facts.update(role.after(cast("ProbeResult", self._module("ecrkit.ecr.probe", dict(after), task_vars))))
        changed_paths = written["changed_paths"]
        diff = list(written.get("diff") or [])
        if self._task.diff:
            diff += [
                {"before_header": item["path"], "after_header": item["path"], "before": item["before"],
                 "after": item["after"]}
                for item in changes["redacted"] if item["path"] in changed_paths
            ]  # fmt: skip
        return {
            **changes["result"],
            # A restart a killed run had notified is still due: a change, so that the handler runs. A command
            # the role runs is a change (in check mode, one that would be made).
            "changed": bool(changed_paths) or bool(changes["pending"]) or bool(changes["run"]),
            "run": [item["what"] for item in changes["run"]],  # what ran, or in check mode would
            "changed_paths": changed_paths,
            "pending": changes["pending"],
            "backups": written["backups"],
            "diff": diff,
            "ansible_facts": facts,
        }

    def _ship(self, shipped: converge.Shipped) -> dict[str, Any]:
        """The files module's entry for a controller file: copied into the remote temporary
        directory unless in check mode (where the entry compares nothing and reports a change)."""
        if shipped["fetch"]:
            _fetch_once(shipped["fetch"], shipped["sha256"], shipped["src"])
        entry = {key: shipped[key] for key in ("path", "owner", "group", "mode")}
        if self._task.check_mode:
            return {**entry, "content": f"(a new binary with sha256 {shipped['sha256']})", "diff": False}
        if not self._connection._shell.tmpdir:
            self._make_tmp_path()
        remote = self._connection._shell.join_path(self._connection._shell.tmpdir, "shipped")
        self._transfer_file(shipped["src"], remote)
        self._fixup_perms2((self._connection._shell.tmpdir, remote), execute=False)
        return {**entry, "src": remote}

    def _module(self, name: str, arguments: dict[str, Any], task_vars: dict[str, Any] | None) -> dict[str, Any]:
        outcome: dict[str, Any] = self._execute_module(name, module_args=arguments, task_vars=task_vars)
        outcome.pop("invocation", None)  # its arguments may hold file contents
        if outcome.get("failed"):
            if outcome.get("conflicts"):
                raise _Conflict(outcome["conflicts"])
            raise AnsibleActionFail(f"{name}: {_why(outcome)}")
        return outcome

    def _update_module_args(self, module_name: str, module_args: dict[str, Any], task_vars: Any,
                            ignore_unknown_opts: bool = False) -> None:  # fmt: skip
        super()._update_module_args(module_name, module_args, task_vars, ignore_unknown_opts=ignore_unknown_opts)
        if self._quiet:
            module_args["_ansible_no_log"] = True  # the host logs no contents that hold secrets


def _checked(role: converge.Role, name: str, options: Any) -> dict[str, Any]:
    """The options as Ansible checks a module's arguments (every one the role passes, of its type),
    converted as it converts them; a missing, unknown or mistyped option fails the task naming it."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # noqa: PLC0415
    from ansible.module_utils.errors import UnsupportedError  # noqa: PLC0415

    if not isinstance(options, dict):
        given = next(
            kind.__name__ for kind in type(options).__mro__ if kind.__module__ == "builtins"
        )  # not Ansible's tagged types
        raise AnsibleActionFail(f"ecrkit.ecr.converge: options: {given} given; expected a mapping")
    checked = ArgumentSpecValidator(role.argument_spec()).validate(options)
    if checked.error_messages:  # (`errors` is an exception object: true even when empty)
        said = "; ".join(
            f"unknown option {message}" if isinstance(error, UnsupportedError) else message
            for error, message in zip(checked.errors.errors, checked.error_messages, strict=True)
        )
        raise AnsibleActionFail(
            f"ecrkit.ecr.converge role {name}: {said} (options are the role's variables without {name}_, "
            f"as its task passes them: {', '.join(role.options)})"
        )
    # Plain types, as JSON gives them: the package renders them (YAML cannot dump Ansible's tagged str).
    return dict(json.loads(json.dumps(checked.validated_parameters)))


class _Conflict(Exception):
    """The files module found a file changed since the probe read it, and wrote none of those."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__(", ".join(paths))
        self.paths = paths


def _why(outcome: dict[str, Any]) -> str:
    """What a failed module said: its msg, else what the exception it raised says (ansible-core
    2.19 reports an escaped OSError, such as 'No space left on device', only there: an error
    summary whose event holds it; before 2.19, a traceback whose last line does), and anything a
    module that did not start printed on stderr."""
    exception = outcome.get("exception")
    summary = getattr(getattr(exception, "event", None), "msg", None)
    lines = [line.strip() for line in str(summary or exception or "").splitlines() if line.strip()]
    said = outcome.get("msg") or (lines[-1] if lines else "failed")
    stderr = (outcome.get("module_stderr") or "").strip()
    return f"{said}{f' ({stderr})' if stderr else ''}"


@contextmanager
def _locked(path: str) -> Iterator[None]:
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _fetch_once(url: str, sha256: str, dest: str) -> None:
    """Download an s3:// object into the controller's cache, verified; one worker at a time, so
    that a fleet's workers download it once and the others find it there."""
    from ecrkit import aws  # noqa: PLC0415 - boto3, only for this install method

    os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
    with _locked(dest):  # errors name the role's variables, not the CLI's options
        names = ("ecr_credential_helper_url", "ecr_credential_helper_sha256", "ecr_credential_helper_controller_cache")
        aws.download_verified(url, sha256, dest, names)
