"""The CLI's one convention (docs/cli.md): every command has a description and an example, every
option help text and its default, commands that write say so; a typo gets "did you mean"; bad
values are refused at once, naming the option."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ecrkit import cli
from tests.conftest import run_ecrkit

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
# The commands that write a file or ECR, and the words their help says it with.
WRITERS = {
    ("render",): "write", ("render", "runner-config"): "writes with --in-place", ("render", "docker-tar"): "writes -o",
    ("mirror",): "writes to ECR", ("fetch",): "writes -o", ("validate",): "--junit writes",
}  # fmt: skip


def parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every parser below `parser`, with the words that reach it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, (*path, name))


COMMANDS = list(parsers(cli.build_parser()))


def test_every_command_is_walked() -> None:
    leaves = [path for path, parser in COMMANDS if not parser._subparsers]
    assert (
        len(leaves) == 15
        and ("render", "launch-template") in leaves
        and ("render", "iam-policy") in leaves
        and ("validate",) in leaves
    )


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=[" ".join(p) or "ecrkit" for p, _ in COMMANDS])
def test_each_help_has_a_description_an_example_and_every_options_help_and_default(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    done = run_ecrkit(*path, "--help")
    assert done.returncode == 0 and done.stderr == ""
    shown = " ".join(done.stdout.split())  # argparse wraps lines
    assert parser.description and " ".join(parser.description.split())[:60] in shown
    assert "example:\n  ecrkit" in done.stdout and "Traceback" not in done.stdout
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        assert action.help, f"{' '.join(path)} {action.option_strings or action.dest}: no help text"
        worth_saying = action.option_strings and not action.required and action.default not in (None, False, "", [])
        if worth_saying and action.default is not argparse.SUPPRESS:
            default = "".join(f"(default: {action.default})".split())  # argparse wraps long URLs anywhere
            assert default in "".join(shown.split()), f"{action.option_strings}: its default is not shown"


def test_the_commands_that_write_say_so_in_their_parents_help() -> None:
    for path, words in WRITERS.items():
        listing = " ".join(run_ecrkit(*path[:-1], "--help").stdout.split())
        assert f"{path[-1]} " in listing and words in listing, (path, words)


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (("--verison",), "did you mean --version?"),
        (("rendr",), "did you mean 'render'?"),
        (("render", "userdata", "--format", "cloudconfig"), "did you mean 'cloud-config'?"),
        (("render", "docker-config", "--registy", ECR), "did you mean --registry?"),
        (
            ("mirror", "--config", "m.yml", "--jbos", "2", "--dryrun"),
            "did you mean --jobs for --jbos, --dry-run for --dryrun?",
        ),
    ],
)
def test_a_typo_gets_did_you_mean(argv: tuple[str, ...], hint: str) -> None:
    done = run_ecrkit(*argv)
    assert done.returncode == 2 and done.stdout == ""
    assert hint in done.stderr, done.stderr


def test_a_command_or_kind_left_out_names_the_choices() -> None:
    assert "a command is required: render, rewrite-image, mirror, fetch, validate" in run_ecrkit().stderr
    assert "a kind to render is required: docker-config, aws-config" in run_ecrkit("render").stderr


def test_the_helper_version_is_named_for_the_helper_and_the_old_spelling_still_works() -> None:
    new = run_ecrkit("render", "userdata", "--registry", ECR, "--helper-version", "0.9.0")
    old = run_ecrkit("render", "userdata", "--registry", ECR, "--version", "0.9.0")
    assert new.returncode == 0 and new.stdout == old.stdout and "/0.9.0/linux-" in new.stdout
    assert "--helper-version" in run_ecrkit("render", "marathon-installer", "--help").stdout
    assert run_ecrkit("--version").stdout.startswith("ecrkit ")


@pytest.mark.parametrize(("context", "same"), sorted(cli.IAM_CONTEXT_NAMES.items()))
def test_for_takes_the_contexts_names(context: str, same: str) -> None:
    named, policy = (
        run_ecrkit("render", "iam-policy", "--for", context),
        run_ecrkit("render", "iam-policy", "--for", same),
    )
    assert named.returncode == 0 and json.loads(named.stdout) == json.loads(policy.stdout)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (("render", "aws-config", "--start-url", "https://d-1234567890.awsapps.com/start", "--sso-region", "eu-west-9",
          "--role-name", "r", "--registry", ECR), "--sso-region: 'eu-west-9' is not accepted"),
        (("render", "docker-config", "--registry", ECR.replace("eu-west-1", "eu-west-9")), "its region: 'eu-west-9'"),
        (("mirror", "--config", "m.yml", "--jobs", "0"), "argument --jobs: 0 is not from 1 to 64"),
    ],
    ids=["sso region", "registry's region", "jobs 0"],
)  # fmt: skip
def test_bad_values_are_refused_at_once_naming_the_option(argv: tuple[str, ...], named: str) -> None:
    done = run_ecrkit(*argv)
    assert done.returncode == 2 and named in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "did you mean eu-west-3?" in done.stderr or "jobs" in named


def test_a_binary_part_is_refused_naming_the_file_not_a_traceback(tmp_path: Path) -> None:
    part = tmp_path / "boothook.bin"
    part.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    done = run_ecrkit("render", "userdata", "--registry", ECR, "--format", "mime", "--with-part", str(part))
    assert done.returncode == 2 and done.stdout == ""
    assert f"--with-part {part}: not UTF-8 text" in done.stderr and "Traceback" not in done.stderr


def test_mirror_json_says_an_early_failure_on_stdout_too(tmp_path: Path) -> None:
    done = run_ecrkit("mirror", "--config", str(tmp_path / "missing.yml"), "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout) == {"exit_code": 2, "error": f"--config {tmp_path / 'missing.yml'}: does not exist"}


def test_debug_shows_the_aws_calls_and_no_secret(tmp_path: Path, aws_env: dict[str, str], s3: Any) -> None:
    s3.create_bucket(Bucket="helpers")
    s3.put_object(Bucket="helpers", Key="helper", Body=b"binary")
    digest, dest = hashlib.sha256(b"binary").hexdigest(), tmp_path / "helper"
    env = {**aws_env, "AWS_SECRET_ACCESS_KEY": "s3cr3t-never-shown", "AWS_SESSION_TOKEN": "t0ken-never-shown"}
    done = run_ecrkit("--debug", "fetch", "s3://helpers/helper", "--sha256", digest, "-o", str(dest), env=env)
    assert done.returncode == 0, done.stderr
    assert "ecrkit: debug: AWS s3.GetObject http" in done.stderr
    assert "never-shown" not in done.stderr + done.stdout
    quiet = run_ecrkit("fetch", "s3://helpers/helper", "--sha256", digest, "-o", str(tmp_path / "again"), env=env)
    assert "debug" not in quiet.stderr
