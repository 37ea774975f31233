"""Bad input never reaches a traceback: the README's exit-code contract, command by command.

Exit 0 done; 1 failed; 2 bad input, naming the option (or variable) and what is accepted, or a
file that cannot be read or parsed, naming its path. The CLI runs in-process (`cli.main`), so an
exception that escapes it fails the test with its traceback.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError

import ecrkit
from ecrkit import converge, plans
from ecrkit.cli import main
from ecrkit.errors import EcrkitError
from ecrkit.validate import ssh_target
from plugins.filter.ecrkit import FilterModule
from testbed.hosts import ansible_playbook, recap
from tests.facts import helper_options, root_files, runner_options

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
FULLWIDTH = ECR.replace("123", "\uff11\uff12\uff13")
SECRET = "s3cr3t-planted-value"
RUNNER_TOML = f'[[runners]]\n  name = "a"\n  token = "{SECRET}"\n  executor = "docker"\n'
AWS_CONFIG = f"[profile other]\naws_secret_access_key = {SECRET}\n"
SSO = ("--start-url", "https://d-1234567890.awsapps.com/start", "--sso-region", "us-east-1", "--role-name", "ECRPull")
MIRROR_YML = f"target: {ECR}\nimages:\n  - source: alpine\n    tags: ['3.20']\n"


def run(*argv: str) -> tuple[int, str, str]:
    """`ecrkit ARGV` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def refused(argv: tuple[str, ...], *named: str) -> str:
    """Assert exit 2, nothing on stdout, and each of `named` in the one-line message."""
    code, out, err = run(*argv)
    assert code == 2, (code, out, err)
    assert out == ""
    assert err.startswith("ecrkit: ") and "Traceback" not in err
    for text in named:
        assert text in err, (text, err)
    return err


# -- reading files --------------------------------------------------------------------------------

FILE_COMMANDS = {
    "docker-config --merge": ("render", "docker-config", "--merge"),
    "runner-config --config": ("render", "runner-config", "--config"),
    "runner-config --config --in-place": ("render", "runner-config", "--in-place", "--config"),
    "aws-config --merge": ("render", "aws-config", *SSO, "--registry", ECR, "--merge"),
    "mirror --config": ("mirror", "--config"),
}


@pytest.mark.parametrize("command", FILE_COMMANDS.values(), ids=FILE_COMMANDS.keys())
def test_a_file_that_is_not_utf8_is_refused_untouched(tmp_path: Path, command: tuple[str, ...]) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"\xff\xfe[[runners]]\x80")
    err = refused((*command, str(path)), str(path), "not UTF-8")
    assert command[-1] in err  # the option
    assert path.read_bytes() == b"\xff\xfe[[runners]]\x80"


def _loop(tmp_path: Path) -> Path:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return tmp_path / "loop"


def _directory(tmp_path: Path) -> Path:
    return tmp_path


@pytest.mark.parametrize("command", FILE_COMMANDS.values(), ids=FILE_COMMANDS.keys())
@pytest.mark.parametrize(("make", "reason"), [(_directory, "is a directory"), (_loop, "symbolic link loop")])
def test_a_path_that_is_no_file_exits_2(tmp_path: Path, command: tuple[str, ...], make: object, reason: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    refused((*command, str(path)), command[-1], str(path), reason)


def test_a_missing_mirror_config_or_runner_config_exits_2(tmp_path: Path) -> None:
    refused(("mirror", "--config", str(tmp_path / "none.yml")), "--config", "does not exist")
    refused(("render", "runner-config", "--config", str(tmp_path / "none.toml")), "--config", "does not exist")


def test_a_missing_merge_file_is_a_new_file_and_said_so(tmp_path: Path) -> None:
    """Decided: kept (a first run has no file yet), but a note names the path so a typo shows."""
    code, out, err = run("render", "docker-config", "--merge", str(tmp_path / "none.json"))
    assert code == 0 and '"credsStore": "ecr-login"' in out
    assert f"--merge {tmp_path / 'none.json'} does not exist" in err
    code, out, err = run("render", "aws-config", *SSO, "--registry", ECR, "--merge", str(tmp_path / "none"))
    assert code == 0 and "does not exist" in err


def test_a_dangling_link_is_not_a_new_file(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    refused(("render", "docker-config", "--merge", str(tmp_path / "link")), "--merge", "does not exist")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (f"[profile a]\nregion = us-east-1\n[profile a]\naws_secret_access_key = {SECRET}\n", "[profile a]"),
        (f"[profile a]\naws_secret_access_key = x\naws_secret_access_key = {SECRET}\n", "'aws_secret_access_key'"),
    ],
    ids=["section", "key"],
)
def test_aws_config_duplicates_name_the_section_or_key_never_a_value(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "config"
    path.write_text(text)
    err = refused(("render", "aws-config", *SSO, "--registry", ECR, "--merge", str(path)), str(path), named)
    assert "twice" in err and SECRET not in err


@pytest.fixture
def as_nobody() -> Iterator[Path]:
    """A directory nobody can read but not write in, and `ecrkit` run as nobody (we are root)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as another user")
    directory = Path(tempfile.mkdtemp(prefix="ecrkit-nobody-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def run_as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-m", "ecrkit"]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(Path(ecrkit.__file__).parent.parent), "HOME": "/"}
    return subprocess.run([*command, *argv], capture_output=True, text=True, env=env, cwd="/", check=False)


def test_an_unreadable_file_exits_2(as_nobody: Path) -> None:
    path = as_nobody / "config.json"
    path.write_text("{}")
    path.chmod(0o600)
    done = run_as_nobody("render", "docker-config", "--merge", str(path))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"--merge {path}: permission denied" in done.stderr


# -- writing files --------------------------------------------------------------------------------


@pytest.mark.parametrize(("where", "reason"), [("missing/docker.tar.gz", "does not exist"), ("", "is a directory")])
def test_docker_tar_into_a_missing_directory_or_onto_a_directory_exits_2(
    tmp_path: Path, where: str, reason: str
) -> None:
    output = str(tmp_path / where) if where else str(tmp_path)
    refused(("render", "docker-tar", "-o", output), "--output", output, reason)
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing half-written


def test_runner_config_in_place_without_write_permission_exits_2_untouched(as_nobody: Path) -> None:
    config = as_nobody / "config.toml"
    config.write_text(RUNNER_TOML)
    config.chmod(0o644)
    done = run_as_nobody("render", "runner-config", "--config", str(config), "--registry", ECR, "--in-place")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"--config {config}: cannot be written (permission denied" in done.stderr
    assert config.read_text() == RUNNER_TOML
    assert [p.name for p in as_nobody.iterdir()] == ["config.toml"]


# -- values that must be refused ------------------------------------------------------------------

BAD_VALUES = {
    "fullwidth account digits": (
        ("render", "docker-config", "--registry", ECR.replace("123", "\uff11\uff12\uff13")),
        "--registry[0]",
    ),
    "registry with a newline": (("render", "docker-config", "--registry", ECR + "\n"), "--registry[0]"),
    "registry in upper case": (("render", "docker-config", "--registry", ECR.upper()), "in lower case"),
    "registry with spaces": (("render", "docker-config", "--registry", f" {ECR}"), "without spaces"),
    "cpus nan": (("render", "marathon-app", "--id", "/a", "--image", "alpine", "--cpus", "nan"), "--cpus"),
    "mem inf": (("render", "marathon-app", "--id", "/a", "--image", "alpine", "--mem", "inf"), "--mem"),
    "url without host": (("render", "userdata", "--url", "https://"), "--url: 'https://'"),
    "url with a bad port": (("render", "userdata", "--url", "https://mirror:99999/x"), "--url"),
    "installer url without host": (("render", "marathon-installer", "--sha256", "a" * 64, "--url", "http://"), "--url"),
    "iam registry without repository": (
        ("render", "iam-policy", "--for", "agent", "--registry", "https://registry.example.com"),
        "--registry: 'https://registry.example.com'",
    ),
    "iam region of another partition": (
        ("render", "iam-policy", "--for", "agent", "--registry", "123456789012.dkr.ecr.cn-north-1.amazonaws.com"),
        "cn-north-1 is in aws-cn",
    ),
    "cache prefix of 1": (("render", "registries-conf", "--registry", ECR, "--cache-prefix", "d"), "--cache-prefix"),
    "cache prefix of 31": (
        ("render", "registries-conf", "--registry", ECR, "--cache-prefix", "d" * 31),
        "2 to 30 characters",
    ),
    "upstream with a scheme": (
        (
            "render",
            "registries-conf",
            "--registry",
            ECR,
            "--cache-prefix",
            "docker-hub",
            "--upstream",
            "https://docker.io",
        ),
        "--upstream: 'https://docker.io'",
    ),
    "rewrite upstream with a scheme": (
        ("rewrite-image", "alpine", "--via", f"{ECR}/hub", "--upstream", "https://docker.io"),
        "--upstream",
    ),
    "aws-config registry with account and region": (
        ("render", "aws-config", *SSO, "--account-id", "123456789012", "--region", "us-east-1", "--registry", "r.io"),
        "--registry[0]: 'r.io'",
    ),
    "aws-config region with a newline": (
        ("render", "aws-config", *SSO, "--registry", ECR, "--region", "us-east-1\n"),
        "--region",
    ),
    "sha256 label": (("render", "userdata", "--sha256", "abc"), "ecrkit: --sha256: 'abc'"),
    "release base url label": (("render", "userdata", "--release-base-url", "ftp://mirror"), "--release-base-url"),
    "installer release base url": (
        ("render", "marathon-installer", "--sha256", "a" * 64, "--release-base-url", "mirror"),
        "--release-base-url",
    ),
    "validate port out of range": (("validate", "host:99999"), "HOST host:99999: port: '99999'"),
    "validate port zero": (("validate", "root@host:0"), "port"),
    "validate port in fullwidth digits": (("validate", "host:\uff12\uff12"), "port"),
}


@pytest.mark.parametrize(("argv", "named"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_exit_2_naming_the_option(argv: tuple[str, ...], named: str) -> None:
    refused(argv, named)


def test_runner_config_messages_name_the_options(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(RUNNER_TOML)
    base = ("render", "runner-config", "--config", str(config))
    refused((*base, "--runner", "nope"), "ecrkit: --runner: 'nope'", "names of the [[runners]]")
    refused((*base, "--hop-limit", "0"), "ecrkit: --hop-limit: 0")
    refused((*base, "--instance-profile", "a b"), "ecrkit: --instance-profile: 'a b'")
    refused((*base, "--userdata", "relative.sh"), "ecrkit: --userdata: 'relative.sh'")
    assert config.read_text() == RUNNER_TOML


@pytest.mark.parametrize("target", [ECR.upper(), f" {ECR} "], ids=["upper case", "spaces"])
def test_a_mirror_target_that_is_not_exact_exits_2(tmp_path: Path, target: str) -> None:
    path = tmp_path / "mirror.yml"
    path.write_text(MIRROR_YML.replace(ECR, repr(target)))
    refused(("mirror", "--config", str(path)), f"{path}: target", "in lower case, without spaces")


def test_a_mirror_plain_http_entry_is_a_registry_host(tmp_path: Path) -> None:
    path = tmp_path / "mirror.yml"
    path.write_text(MIRROR_YML + "plain_http: ['http://registry.local:5000']\n")
    refused(("mirror", "--config", str(path)), f"{path}: plain_http[0]: 'http://registry.local:5000'")


def test_a_mirror_schema_error_never_repeats_a_value(tmp_path: Path) -> None:
    path = tmp_path / "mirror.yml"
    path.write_text(f"target: {ECR}\nimages:\n  - source: alpine\n    tags: {SECRET}\n")
    err = refused(("mirror", "--config", str(path)), str(path), "images/0/tags: must be of type array")
    assert SECRET not in err


def test_ssh_target_takes_ports_1_to_65535() -> None:
    assert ssh_target("root@host:65535").port == 65535
    assert ssh_target("host").port is None  # ~/.ssh/config's Port, else 22


def test_a_malformed_inventory_says_it_did_not_parse(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts: [unclosed\n")
    refused(("validate", "-i", str(inventory)), "-i", "an inventory that parses", "No inventory was parsed")


# -- every command: 0 for good input --------------------------------------------------------------


def test_good_input_still_exits_0(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(RUNNER_TOML)
    for argv in (
        ("render", "docker-config", "--registry", ECR),
        ("render", "aws-config", *SSO, "--registry", ECR),
        ("render", "runner-config", "--config", str(config), "--registry", ECR, "--hop-limit", "1"),
        ("render", "userdata", "--url", "https://mirror.example.com:8443/helper-@ARCH@", "--sha256", "a" * 64),
        ("render", "docker-tar", "-o", str(tmp_path / "docker.tar.gz")),
        ("render", "marathon-app", "--id", "/a", "--image", "alpine", "--cpus", "0.5", "--mem", "64"),
        ("render", "marathon-installer", "--sha256", "a" * 64),
        ("render", "iam-policy", "--for", "agent", "--registry", ECR),
        ("render", "iam-policy", "--for", "agent", "--registry", "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
        ("render", "registries-conf", "--registry", ECR, "--cache-prefix", "dh", "--upstream", "registry.local:5000"),
        ("rewrite-image", "alpine", "--via", f"{ECR}/hub"),
    ):
        code, out, err = run(*argv)
        assert code == 0, (argv, err)
        assert out


# -- the patterns ---------------------------------------------------------------------------------

PACKAGE = Path(ecrkit.__file__).parent
VALIDATING_MODULES = [
    p for p in PACKAGE.rglob("*.py") if p.name not in ("checks.py", "testbed.py", "standin.py", "standin_ecr.py")
]


@pytest.mark.parametrize("path", VALIDATING_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_pattern_is_ascii_only_and_anchored_at_the_very_end(path: Path) -> None:
    """\\d and \\w match other scripts' digits and letters; `$` lets a trailing newline through."""
    text = path.read_text()
    for call in re.finditer(r"re\.compile\((.*?)\)\n", text, re.S):
        assert "re.ASCII" in call.group(1), call.group(0)
        assert not re.search(r'\$["\']', call.group(1)), call.group(0)


# -- the same bad values through the roles' variables (the filters the roles call) ---------------

RUNNER_OPTIONS = runner_options(ECR)
SSO_VARIABLES = {
    "profile": "ecr",
    "session": "ecrkit",
    "start_url": "https://d-1234567890.awsapps.com/start",
    "sso_region": "us-east-1",
    "account_id": "",
    "role_name": "ECRPull",
    "region": "",
}


FILTERS = FilterModule().filters()


def _runner_plan(**changed: object) -> dict[str, Any]:
    """gitlab_runner_ecr's plan as its converge task makes it, or its error."""
    probe = root_files({str(RUNNER_OPTIONS["config_path"]): RUNNER_TOML})
    return plans.runner_plan(probe, {**RUNNER_OPTIONS, **changed})


RULE = {"registries": [], "public": False, "creds_store": False}
DOCKER_AUTH = {"users": ["root"], "state": "present", "replace_invalid": False}
AGENT = {**RULE, "region": "", "cache_dir": "/var/lib/ecr-login", "docker_tar_path": "/etc/docker.tar.gz",
         "env_file": "/etc/default/mesos-slave", "service": "mesos-slave", "docker_config_path": ""}  # fmt: skip
DROP_IN = {"registry": ECR, "cache_prefix": "docker-hub", "upstream": "docker.io", "path": "/etc/containers/r.conf"}


HELPER = helper_options(install_method="release", install_dir="/usr/bin", cache_dir="", logrotate=False)
SSO_OPTIONS = {"users": ["root"], "registries": [ECR], "form": "auto", "helper_version": "0.12.0", "name": "ecr",
       **{key: value for key, value in SSO_VARIABLES.items() if key != "profile"}}  # fmt: skip
X86 = {"commands": [{"rc": 0, "stdout": "Version: 0.12.0"}, {"rc": 0, "stdout": "x86_64\n"}]}


def _filter(name: str, *args: object, **kwargs: object) -> object:
    return FILTERS[name](*args, **kwargs)


def _converge(role: str, options: dict[str, Any], probe: dict[str, Any] | None = None) -> object:
    """What a role's converge task decides (the action fails the host with the error)."""
    return converge.role(role).plan({**root_files({}), **(probe or {})}, options)  # type: ignore[typeddict-item]


ROLE_VALUES = {
    "fullwidth digits": (
        lambda: _converge("docker_auth_config", {**RULE, **DOCKER_AUTH, "registries": [FULLWIDTH]}),
        "docker_auth_config_registries[0]",
    ),
    "registry in upper case": (
        lambda: _converge("marathon_agent_ecr", {**AGENT, "registries": [ECR.upper()]}),
        "marathon_agent_ecr_registries[0]",
    ),
    "validated registry in upper case": (
        lambda: _filter("validate_args", {**RULE, "registries": [ECR.upper()]}, [], ["root"]),
        "docker_auth_config_registries[0]",
    ),
    "cache prefix of 1": (
        lambda: _converge("registries_conf", {**DROP_IN, "cache_prefix": "d"}),
        "registries_conf_cache_prefix: 'd'",
    ),
    "upstream with a scheme": (
        lambda: _converge("registries_conf", {**DROP_IN, "upstream": "https://docker.io"}),
        "registries_conf_upstream: 'https://docker.io'",
    ),
    "ecr_account prefix of 31": (
        lambda: _filter(
            "ecr_account",
            {"region": "us-east-1", "pull_through_rules": [{"prefix": "d" * 31, "upstream": "quay"}]},
        ),
        "2 to 30 characters",
    ),
    "helper url without host": (
        lambda: _converge(
            "ecr_credential_helper", {**HELPER, "install_method": "url", "url": "https://", "sha256": "a" * 64}
        ),
        "ecr_credential_helper_url: 'https://'",
    ),
    "helper release base url": (
        lambda: _converge("ecr_credential_helper", {**HELPER, "release_base_url": "ftp://m"}, X86),
        "ecr_credential_helper_release_base_url",
    ),
    "sso start url without host": (
        lambda: _converge("aws_sso_profile", {**SSO_OPTIONS, "start_url": "https://"}),
        "aws_sso_profile_start_url",
    ),
    "sso registry ignored when account and region are given": (
        lambda: _converge(
            "aws_sso_profile",
            {**SSO_OPTIONS, "registries": ["r.io"], "account_id": "123456789012", "region": "us-east-1"},
        ),
        "aws_sso_profile_registries[0]: 'r.io'",
    ),
    "service region with a newline": (
        lambda: _converge("marathon_agent_ecr", {**AGENT, "region": "us-east-1\n"}),
        "marathon_agent_ecr_region",
    ),
    "runner registries": (
        lambda: _runner_plan(registries=[ECR.upper()]),
        f"gitlab_runner_ecr_registries[0]: '{ECR.upper()}'",
    ),
    "runner hop limit": (lambda: _runner_plan(hop_limit=0), "gitlab_runner_ecr_hop_limit: 0"),
    "runner names": (lambda: _runner_plan(runners=["nope"]), "gitlab_runner_ecr_runners: 'nope'"),
    "runner userdata url": (lambda: _runner_plan(userdata_url="https://"), "gitlab_runner_ecr_userdata_url"),
    "runner userdata sha256": (lambda: _runner_plan(userdata_sha256="abc"), "gitlab_runner_ecr_userdata_sha256"),
    "runner release base url": (
        lambda: _runner_plan(userdata_release_base_url="mirror"),
        "gitlab_runner_ecr_userdata_release_base_url",
    ),
    "runner userdata path": (lambda: _runner_plan(userdata_path="u.sh"), "gitlab_runner_ecr_userdata_path"),
}


@pytest.mark.parametrize(("call", "named"), ROLE_VALUES.values(), ids=ROLE_VALUES.keys())
def test_the_roles_refuse_the_same_values_naming_the_variable(call: Callable[[], object], named: str) -> None:
    with pytest.raises((AnsibleFilterError, EcrkitError)) as caught:
        call()
    assert named in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("role", "variables", "named", "ok"),
    [
        (
            "registries_conf",
            {"registries_conf_registry": ECR, "registries_conf_cache_prefix": "d"},
            "registries_conf_cache_prefix: 'd'",
            1,  # the argument_specs check; the converge task fails before it writes
        ),
        (
            "docker_auth_config",
            {"docker_auth_config_registries": [FULLWIDTH]},
            "docker_auth_config_registries[0]",
            1,  # the argument_specs check; the converge task reads, then fails before it writes
        ),
        (
            "ecr_credential_helper",
            {"ecr_credential_helper_install_method": "url", "ecr_credential_helper_url": "ftp://example.com/helper"},
            "ecr_credential_helper_url: 'ftp://example.com/helper'",
            1,  # the argument_specs check; the converge task reads, then fails before it writes
        ),
    ],
    ids=["registries_conf", "docker_auth_config", "ecr_credential_helper"],
)
def test_a_play_given_a_bad_value_stops_before_any_change_naming_the_variable(
    tmp_path: Path, role: str, variables: dict[str, object], named: str, ok: int
) -> None:
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        yaml.safe_dump(
            [{"name": "Bad input", "hosts": "localhost", "gather_facts": False, "roles": [f"ecrkit.ecr.{role}"]}]
        )
    )
    written = tmp_path / "registries.conf.d" / "50-ecrkit-mirror.conf"
    extra = json.dumps({
        **variables, "registries_conf_path": str(written), "docker_auth_config_users": ["nobody"],
        "ansible_python_interpreter": sys.executable,  # the probe runs here: the Python that runs the tests
    })  # fmt: skip
    result = ansible_playbook("-i", "localhost,", "-c", "local", "--check", str(playbook), "-e", extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stdout
    counts = recap(result.stdout)["localhost"]
    assert (counts["ok"], counts["changed"], counts["failed"]) == (ok, 0, 1)
    assert not written.parent.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ("render", "marathon-app", "--id", "/a", "--image", "alpine", "--instances", "\uff12"),
        ("render", "marathon-app", "--id", "/a", "--image", "alpine", "--cpus", "\uff11"),
        ("mirror", "--config", "m.yml", "--jobs", "\uff14"),
    ],
)
def test_numbers_in_other_scripts_digits_are_refused(argv: tuple[str, ...]) -> None:
    code, out, err = run(*argv)
    assert code == 2 and out == "" and "is not a" in err


def test_a_closed_pipe_is_no_traceback() -> None:
    """`ecrkit render ... | head`: the reader may leave before the output is written."""
    done = subprocess.Popen(
        [sys.executable, "-m", "ecrkit", "render", "iam-policy", "--for", "agent"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)},
    )
    assert done.stdout is not None and done.stderr is not None
    done.stdout.close()  # before the interpreter has started, so the write finds no reader
    assert "Traceback" not in done.stderr.read().decode()
    assert done.wait() in (0, 1)


def test_the_runner_plan_still_renders_good_variables() -> None:
    plan = _runner_plan(hop_limit=1, instance_profile="ci-jobs", userdata_sha256="a" * 64)
    assert isinstance(plan, dict)
    paths = {name: f["path"] for name, f in plan["files"].items()}
    assert paths == {
        "service_env": RUNNER_OPTIONS["env_path"],
        "config_toml": RUNNER_OPTIONS["config_path"],
        "userdata": RUNNER_OPTIONS["userdata_path"],
    }
    assert "https://mirror.example.com/0.12.0/linux-@ARCH@/" in plan["files"]["userdata"]["content"]
    assert plan["rule"] == {"registries": [ECR], "creds_store": False}


def test_fetch_refuses_bad_input_before_any_download(tmp_path: Path) -> None:
    sha = ("--sha256", "a" * 64)
    refused(("fetch", "s3://b/k", "--sha256", "abc", "-o", str(tmp_path / "h")), "--sha256: 'abc'")
    refused(("fetch", "https://b/k", *sha, "-o", str(tmp_path / "h")), "SOURCE: 'https://b/k'")
    refused(("fetch", "s3://b/k", *sha, "-o", str(tmp_path)), f"--output {tmp_path}: is a directory")
    refused(("fetch", "s3://b/k", *sha, "-o", str(tmp_path / "no" / "h")), "--output", "does not exist")
    assert list(tmp_path.iterdir()) == []
