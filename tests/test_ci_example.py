"""The CI example (examples/gitlab-ci.yml) and its image (Containerfile, `make ci-image`).

The example is read as GitLab reads it: YAML whose keys are GitLab's keywords, `rules:` evaluated for a
scheduled pipeline, a tag and a branch, and each ecrkit command line run through ecrkit's own parser. The
jobs the docs show are the file's jobs. The image is built FROM the test bed's debootstrap image (no
Docker Hub here) and runs what the jobs run."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import yaml

import ecrkit
from ecrkit.cli import build_parser
from tests.conftest import ROOT, readme_block

EXAMPLE = ROOT / "examples" / "gitlab-ci.yml"
IMAGE = f"$CI_REGISTRY_IMAGE/ecrkit:{ecrkit.__version__}"  # where the docs tell users to push it
BASE_IMAGE = "localhost/debian-systemd:bookworm"  # tools/base-image.sh
TEST_IMAGE = f"localhost/ecrkit-test:{ecrkit.__version__}"

# GitLab's CI/CD YAML reference: the keywords of a job, of the top level, of artifacts and of a rule.
JOB_KEYS = {
    "after_script", "allow_failure", "artifacts", "before_script", "cache", "coverage", "dast_configuration",
    "dependencies", "environment", "extends", "hooks", "id_tokens", "identity", "image", "inherit", "interruptible",
    "manual_confirmation", "needs", "pages", "parallel", "release", "resource_group", "retry", "rules", "run",
    "script", "secrets", "services", "stage", "tags", "timeout", "trigger", "variables", "when",
}  # fmt: skip
GLOBAL_KEYS = {"default", "include", "stages", "variables", "workflow"}
ARTIFACT_KEYS = {"access", "exclude", "expire_in", "expose_as", "name", "paths", "public", "reports", "untracked",
                 "when"}  # fmt: skip
RULE_KEYS = {"allow_failure", "changes", "exists", "if", "interruptible", "needs", "variables", "when"}
WHEN = {"on_success", "on_failure", "always"}

SCHEDULE = {"CI_PIPELINE_SOURCE": "schedule", "CI_COMMIT_BRANCH": "main"}
TAG = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": f"v{ecrkit.__version__}"}
PUSH = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main"}


def pipeline() -> dict[str, Any]:
    loaded = yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def jobs() -> dict[str, dict[str, Any]]:
    return {name: job for name, job in pipeline().items() if name not in GLOBAL_KEYS and not name.startswith(".")}


def runs(expression: str, variables: dict[str, str]) -> bool:
    """A rule's `if:` as GitLab evaluates the forms the example uses: `$VAR == "text"`, `$VAR =~ /re/`, `$VAR`."""
    if match := re.fullmatch(r'\$(\w+) == "([^"]*)"', expression):
        return variables.get(match[1]) == match[2]
    if match := re.fullmatch(r"\$(\w+) =~ /(.*)/", expression):
        return re.search(match[2], variables.get(match[1], "")) is not None
    if match := re.fullmatch(r"\$(\w+)", expression):
        return bool(variables.get(match[1]))
    raise AssertionError(f"an `if:` this test cannot evaluate: {expression}")


def selected(variables: dict[str, str]) -> set[str]:
    """The jobs a pipeline with these predefined variables runs: the first rule that matches decides."""
    chosen = set()
    for name, job in jobs().items():
        for rule in job.get("rules", []):
            if "if" not in rule or runs(rule["if"], variables):
                if rule.get("when", "on_success") != "never":
                    chosen.add(name)
                break
    return chosen


def ecrkit_args(command: str) -> tuple[str, Any]:
    """A script line that runs ecrkit, through ecrkit's own parser (a shell redirection cut off)."""
    words = shlex.split(command.split(">", maxsplit=1)[0])
    assert words[0] == "ecrkit", command
    return words[1], build_parser().parse_args(words[1:])


def test_the_example_holds_only_keywords_gitlab_accepts() -> None:
    assert set(jobs()) == {"validate", "mirror", "release"}
    for name, job in jobs().items():
        assert set(job) <= JOB_KEYS, f"{name}: {sorted(set(job) - JOB_KEYS)}"
        assert isinstance(job["image"], str) and job["image"], name
        for key in ("before_script", "script"):
            assert all(isinstance(line, str) for line in job.get(key, [])), f"{name}: {key}"
        assert job["script"], name
        for value in job.get("variables", {}).values():  # GitLab refuses booleans and nested values
            assert isinstance(value, str | int) and not isinstance(value, bool), f"{name}: {value!r}"
        artifacts = job.get("artifacts", {})
        assert set(artifacts) <= ARTIFACT_KEYS, name
        assert artifacts.get("when", "on_success") in WHEN, name
        assert all(isinstance(path, str) for path in artifacts.get("paths", [])), name
        for rule in job["rules"]:
            assert set(rule) <= RULE_KEYS, f"{name}: {rule}"


def test_the_schedule_runs_validate_and_mirror_and_a_release_tag_runs_release() -> None:
    assert selected(SCHEDULE) == {"validate", "mirror"}
    assert selected(TAG) == {"release"}
    assert selected(PUSH) == set()
    # Negative controls for the evaluator: a tag that is not a version releases nothing.
    assert selected({**TAG, "CI_COMMIT_TAG": f"v{ecrkit.__version__}-rc1"}) == set()
    assert selected({**TAG, "CI_COMMIT_TAG": "latest"}) == set()


def test_the_validation_job_runs_a_command_ecrkit_accepts_and_reports_its_junit() -> None:
    job = jobs()["validate"]
    (command,) = job["script"]
    subcommand, args = ecrkit_args(command)
    assert subcommand == "validate"
    assert args.inventory  # the fleet, from an inventory
    assert args.junit == job["artifacts"]["reports"]["junit"] == "validate.xml"
    assert job["artifacts"]["when"] == "always"  # a failing fleet's report too


def test_the_mirror_job_runs_a_command_ecrkit_accepts() -> None:
    job = jobs()["mirror"]
    (command,) = job["script"]
    subcommand, args = ecrkit_args(command)
    assert subcommand == "mirror" and args.json
    assert any(fnmatch.fnmatch("mirror-1.json", path) for path in job["artifacts"]["paths"])


@pytest.mark.parametrize(
    ("marker", "page", "name"),
    [("validate-gitlab-ci", "docs/validation.md", "validate"), ("mirror-gitlab-ci", "docs/mirroring.md", "mirror")],
)
def test_the_docs_show_the_examples_jobs(marker: str, page: str, name: str) -> None:
    shown = yaml.safe_load(readme_block(f"<!-- {marker} -->", page))
    assert shown == {name: jobs()[name]}


def test_the_jobs_name_the_image_the_docs_tell_users_to_push() -> None:
    assert jobs()["validate"]["image"] == jobs()["mirror"]["image"] == IMAGE
    text = EXAMPLE.read_text() + (ROOT / "docs" / "validation.md").read_text()
    assert f'podman push localhost/ecrkit:{ecrkit.__version__} "{IMAGE}"' in text
    containerfile = (ROOT / "Containerfile").read_text()
    assert f"ARG VERSION={ecrkit.__version__}\n" in containerfile  # one version: the image's and ecrkit's
    assert "ARG BASE=docker.io/library/python:3.11-slim-bookworm\n" in containerfile  # what users pull


def test_the_release_job_publishes_what_make_dist_builds() -> None:
    job = jobs()["release"]
    script = job["script"]
    assert script[0] == "make dist"
    assert subprocess.run(["make", "-n", "dist"], cwd=ROOT, capture_output=True, check=False).returncode == 0
    # The names tests/test_distribution.py proves `make dist` builds; each publish names one of them.
    built = [f"ecrkit-{ecrkit.__version__}-py3-none-any.whl", f"ecrkit-ecr-{ecrkit.__version__}.tar.gz"]
    version = TAG["CI_COMMIT_TAG"].removeprefix("v")
    (check,) = (line for line in script if line.startswith("test -f"))
    assert shlex.split(check.replace("${CI_COMMIT_TAG#v}", version))[2] == f"dist/{built[0]}"
    (twine,) = (shlex.split(line) for line in script if "twine upload" in line)
    (wheels,) = (word for word in twine if word.startswith("dist/"))
    assert fnmatch.filter(built, wheels.removeprefix("dist/")) == built[:1]
    (galaxy,) = (shlex.split(line) for line in script if "collection publish" in line)
    (artifact,) = (word for word in galaxy if word.startswith("dist/"))
    assert fnmatch.filter(built, artifact.removeprefix("dist/")) == built[1:]
    # ansible-galaxy's own parser takes the command line.
    parsed = subprocess.run(
        [sys.executable, "-c", "import sys; from ansible import context; from ansible.cli.galaxy import GalaxyCLI; "
         "GalaxyCLI(sys.argv[1:]).parse(); print(*(context.CLIARGS[k] for k in ('action', 'args', 'api_key')))",
         "ansible-galaxy", *galaxy[1:]],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert parsed.returncode == 0, parsed.stderr
    assert parsed.stdout.split() == ["publish", artifact, "$GALAXY_API_KEY"]


@pytest.mark.hosts
def test_make_ci_image_builds_the_image_that_runs_the_jobs_commands() -> None:
    """`make ci-image`, FROM the local base image: ecrkit, its validate command and JUnit report, and the
    collection, inside it (without a network: the jobs' commands need none to start)."""
    env = {**os.environ, "CONTAINERS_CONF": str(ROOT / "molecule" / "containers.conf")}
    done = subprocess.run(
        ["make", "--no-print-directory", "ci-image", f"CI_IMAGE_BASE={BASE_IMAGE}", f"CI_IMAGE={TEST_IMAGE}"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{TEST_IMAGE}: built FROM {BASE_IMAGE}" in done.stdout

    def inside(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", "run", "--rm", "--network=none", TEST_IMAGE, "sh", "-c", script],
                              env=env, capture_output=True, text=True, check=False, timeout=120)  # fmt: skip

    shown = inside("ecrkit validate --help && ansible-galaxy collection list ecrkit.ecr && ecrkit --version")
    assert shown.returncode == 0, shown.stderr
    assert "usage: ecrkit validate" in shown.stdout
    assert re.search(rf"^ecrkit\.ecr +{re.escape(ecrkit.__version__)}\s*$", shown.stdout, re.MULTILINE), shown.stdout
    assert f"ecrkit {ecrkit.__version__}" in shown.stdout
    # The validate job's command, on the container itself: a host with no config fails (exit 1), and
    # the JUnit report is written all the same.
    report = inside("ecrkit validate --registry 123456789012.dkr.ecr.us-east-1.amazonaws.com "
                    "--junit validate.xml >/dev/null; echo $?; cat validate.xml")  # fmt: skip
    code, _, xml = report.stdout.partition("\n")
    assert code == "1", report.stdout + report.stderr
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None and int(suite.get("failures", "0")) >= 1
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    helper = cases["user root: helper on PATH"]  # docker-credential-ecr-login, for the mirror job
    assert helper.find("failure") is None, ET.tostring(helper, encoding="unicode")
