"""The helpers users really run, side by side against the stand-in: Debian 12's 0.6.0, Debian 13's
0.7.1 and sid's (0.12.0 or later; `make helpers` fetches them). Each proof of tests/test_standin_pull.py
and tests/test_workstations.py runs once per helper; where the versions behave differently, a
test says so by name. Every version is read from its binary.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ecrkit import converge
from ecrkit.checks import HELPER_ANSWER_CAUSES, HELPER_LOG_CAUSES, Finding, judge
from ecrkit.helper import parse_version
from testbed.standin import ACCOUNT, REGION, REGISTRY_HOST, ROLE_KEYS, StandIn
from tests.conftest import TestedHelper, run_ecrkit
from tests.facts import MISSING, probe_result, user
from tests.test_workstations import PROFILE, START_URL, workstation

pytestmark = pytest.mark.standin

GOOD_HOST = json.loads((Path(__file__).parent / "data" / "probe-good-host.json").read_text())
SSO_SESSION = "ecrkit"  # the session name `ecrkit render aws-config` gives by default
# What each Debian suite ships (the package's version; the binary is asked, see the first test).
SHIPPED = {"bookworm": "0.6.0", "trixie": "0.7.1"}


def home_with(tmp_path: Path, config: str) -> Path:
    (tmp_path / ".docker").mkdir(parents=True, exist_ok=True)
    (tmp_path / ".docker" / "config.json").write_text(config)
    return tmp_path


def user_env(stand_in: StandIn, helper: TestedHelper, home: Path, **changes: str | None) -> dict[str, str]:
    """A docker CLI user whose PATH finds `helper` first, with its own cache; None removes a variable."""
    env = helper.env(stand_in.client_env(home)) | {"AWS_ECR_CACHE_DIR": str(home / "ecr-cache")}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def pull(stand_in: StandIn, image: str, env: dict[str, str]) -> tuple[int, str]:
    done = stand_in.run(["docker", "pull", image], env)
    stand_in.run(["docker", "rmi", image], env)
    return done.returncode, done.stderr


def rendered(*arguments: str) -> str:
    done = run_ecrkit("render", *arguments)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- which helper is which --------------------------------------------------------------------


def test_each_helper_is_the_version_its_suite_ships(helper: TestedHelper) -> None:
    if helper.suite in SHIPPED:
        assert helper.version == SHIPPED[helper.suite]
    else:  # sid moves: whatever it has, at least 0.12.0
        assert helper.release >= (0, 12, 0)


def test_the_version_verb_of_debians_0_6_and_0_7_builds_says_0_6_4_so_ecrkit_asks_dash_v(
    helper: TestedHelper, stand_in: StandIn
) -> None:
    verb = stand_in.run([str(helper.path), "version"]).stdout
    dash_v = stand_in.run([str(helper.path), "-v"]).stdout
    assert parse_version(dash_v) == helper.version
    if helper.release < (0, 8, 0):
        assert verb.strip() == "0.6.4"  # a constant left behind upstream: 0.7.1 says it too
    else:
        assert parse_version(verb) == helper.version
    # The role runs `-v` and reads the fact from it (ecr_credential_helper_installed_version).
    ran = probe_result(commands=[{"argv": [str(helper.path), "-v"], "rc": 0, "stdout": dash_v, "stderr": ""}])
    assert converge.role("ecr_credential_helper").after(ran) == {
        "ecr_credential_helper_installed_version": helper.version
    }


# -- pulls ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arguments", [["--registry", REGISTRY_HOST], []], ids=["credHelpers", "credsStore"])
def test_the_config_ecrkit_renders_pulls(
    stand_in: StandIn, image: str, tmp_path: Path, helper: TestedHelper, arguments: list[str]
) -> None:
    home = home_with(tmp_path, rendered("docker-config", *arguments))
    code, stderr = pull(stand_in, image, user_env(stand_in, helper, home))
    assert code == 0, stderr
    # Negative control: the same user with another registry's helper entry is refused.
    other = rendered("docker-config", "--registry", "210987654321.dkr.ecr.us-east-1.amazonaws.com")
    code, _ = pull(stand_in, image, user_env(stand_in, helper, home_with(tmp_path / "other", other)))
    assert code != 0


def test_list_names_the_registry_only_when_given_a_region(
    stand_in: StandIn, tmp_path: Path, helper: TestedHelper
) -> None:
    with_region = stand_in.run(["docker-credential-ecr-login", "list"], user_env(stand_in, helper, tmp_path / "a"))
    assert with_region.returncode == 0, with_region.stderr
    assert f"https://{REGISTRY_HOST}" in json.loads(with_region.stdout)
    without = stand_in.run(
        ["docker-credential-ecr-login", "list"], user_env(stand_in, helper, tmp_path / "b", AWS_REGION=None)
    )
    assert f"https://{REGISTRY_HOST}" not in json.loads(without.stdout or "{}")


# -- the workstation SSO path -----------------------------------------------------------------

AUTO_FORM = {"bookworm": "legacy", "trixie": "sso-session", "sid": "sso-session"}


def test_auto_picks_the_form_this_helper_reads_and_it_pulls(
    stand_in: StandIn, image: str, tmp_path: Path, helper: TestedHelper
) -> None:
    # What the role does: ask the installed helper (`-v`), then aws_sso_profile_form: auto.
    said = stand_in.run([str(helper.path), "-v"]).stdout
    ran = probe_result(commands=[{"argv": [str(helper.path), "-v"], "rc": 0, "stdout": said, "stderr": ""}])
    version = converge.role("ecr_credential_helper").after(ran)["ecr_credential_helper_installed_version"]
    inputs = {key: value for key, value in PROFILE.items() if key not in ("session", "profile")}
    options = {**inputs, "session": SSO_SESSION, "name": PROFILE["profile"], "users": ["root"]}
    options |= {"registries": [REGISTRY_HOST], "form": "auto", "helper_version": version}
    root = probe_result(users={"root": user("root")}, paths={"root:.aws": MISSING, "root:.aws/config": MISSING})
    chosen = converge.role("aws_sso_profile").plan(root, options)["result"]["form"]
    assert chosen == AUTO_FORM[helper.suite]
    env = helper.env(workstation(stand_in, tmp_path, chosen))
    assert pull(stand_in, image, env)[0] != 0  # not signed in yet
    stand_in.sso_login(tmp_path, START_URL if chosen == "legacy" else SSO_SESSION, START_URL, "us-east-1")
    code, stderr = pull(stand_in, image, env)
    assert code == 0, stderr
    assert stand_in.sso_requests()[-1] == {"account_id": ACCOUNT, "role_name": "ECRPull"}


def test_helper_0_6_panics_on_an_sso_session_profile_and_0_7_on_reads_it(
    stand_in: StandIn, tmp_path: Path, helper: TestedHelper
) -> None:
    env = helper.env(workstation(stand_in, tmp_path, "sso-session"))
    stand_in.sso_login(tmp_path, SSO_SESSION, START_URL, "us-east-1")
    done = stand_in.run(["docker-credential-ecr-login", "get"], env, input=REGISTRY_HOST)
    if helper.release < (0, 7, 0):
        assert done.returncode != 0
        assert "missing required configuration: sso_region, sso_start_url" in done.stdout + done.stderr
    else:
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["Username"] == "AWS"


# -- the token cache --------------------------------------------------------------------------


def cache_entries(home: Path) -> dict[str, Any]:
    entries: dict[str, Any] = json.loads((home / "ecr-cache" / "cache.json").read_text())["Registries"]
    return entries


def test_fifty_pulls_cost_one_token_request_with_the_cache(
    stand_in: StandIn, image: str, tmp_path: Path, helper: TestedHelper
) -> None:
    home = home_with(tmp_path, rendered("docker-config", "--registry", REGISTRY_HOST))
    env = user_env(stand_in, helper, home)
    before = stand_in.token_requests()
    for _ in range(50):
        code, stderr = pull(stand_in, image, env)
        assert code == 0, stderr
    assert stand_in.token_requests() - before == 1
    assert (home / "ecr-cache").stat().st_mode & 0o077 == 0  # the helper keeps it private
    [entry] = cache_entries(home).values()
    assert entry["ProxyEndpoint"] == f"https://{REGISTRY_HOST}" and entry["Service"] == "ecr"


def test_the_cache_key_is_md5_with_the_access_key_before_0_12_and_sha256_from_0_12(
    stand_in: StandIn, tmp_path: Path, helper: TestedHelper
) -> None:
    done = stand_in.run(
        ["docker-credential-ecr-login", "get"], user_env(stand_in, helper, tmp_path), input=REGISTRY_HOST
    )
    assert done.returncode == 0, done.stderr
    [key] = cache_entries(tmp_path)
    region, hashed, registry_id = key[: len(REGION)], key[len(REGION) + 1 : -len(ACCOUNT) - 1], key[-len(ACCOUNT) :]
    assert (region, registry_id) == (REGION, ACCOUNT)
    raw = base64.b64decode(hashed)
    access_key = ROLE_KEYS["AWS_ACCESS_KEY_ID"].encode()
    if helper.release < (0, 12, 0):
        assert raw.startswith(access_key) and len(raw) == len(access_key) + 16  # the key ID, then an MD5
    else:
        assert access_key not in raw and len(raw) == 32  # a SHA-256 only


def token_requests_per_get(stand_in: StandIn, home: Path, helpers: list[TestedHelper]) -> list[int]:
    """GetAuthorizationToken calls made by a `get` of each helper in turn, all with one cache."""
    requests = []
    for tested in helpers:
        before = stand_in.token_requests()
        done = stand_in.run(
            ["docker-credential-ecr-login", "get"], user_env(stand_in, tested, home), input=REGISTRY_HOST
        )
        assert done.returncode == 0, done.stderr
        requests.append(stand_in.token_requests() - before)
    return requests


def test_helper_0_12_reads_an_older_helpers_md5_entry_but_not_the_other_way_round(
    stand_in: StandIn, tmp_path: Path
) -> None:
    old, new = TestedHelper("bookworm"), TestedHelper("sid")
    # 0.12 falls back to the legacy MD5 key ("Found cached credentials using legacy MD5 key").
    assert token_requests_per_get(stand_in, tmp_path / "upgraded", [old, new, old]) == [1, 0, 0]
    assert "legacy MD5 key" in (tmp_path / "upgraded" / "ecr-cache" / "log" / "ecr-login.log").read_text()
    # An older helper does not know the SHA-256 key: after a downgrade it asks ECR once more.
    assert token_requests_per_get(stand_in, tmp_path / "downgraded", [new, old, new, old]) == [1, 1, 0, 0]
    assert len(cache_entries(tmp_path / "downgraded")) == 2  # both layouts side by side in one cache.json


# -- every cause the judge names, in each version's own words ----------------------------------

CAUSES: dict[str, dict[str, Any]] = {
    "no region": {"verb": "list", "env": {"AWS_REGION": None}},
    "no credentials": {
        "env": {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_EC2_METADATA_DISABLED": "true"}
    },
    "access denied": {"refuse": "AccessDeniedException"},
    "certificate": {"env": {"AWS_CA_BUNDLE": None}},
    "throttled": {"refuse": "ThrottlingException"},
    "not an ECR hostname": {"registry": "registry.example.com"},
    "unreadable file": {"env": {"AWS_CA_BUNDLE": "/nonexistent/ca.pem"}},  # the helper panics before logging
}


def judged(verb: str, registry: str, rc: int, said: str, log: str) -> list[Finding]:
    """The judge's findings for a host whose only fault is this live get or list."""
    facts = copy.deepcopy(GOOD_HOST)
    consumer = facts["consumers"][0]
    if verb == "list":
        consumer["config"]["creds_store"] = "ecr-login"
        consumer["env"]["values"]["AWS_REGION"] = REGION  # the service's: the list below ran without one
        listed = json.loads(said) if rc == 0 else None
        consumer["list"] = {"rc": rc, "log": log, "registries": listed, "said": said}
    else:
        consumer["gets"][0] = {"registry": registry, "rc": rc, "said": said, "log": log}
    return [f for f in judge(facts, [REGISTRY_HOST]) if f.severity == "error"]


@pytest.mark.parametrize("cause", CAUSES)
def test_the_judge_names_the_cause_in_this_helpers_words(
    stand_in: StandIn, tmp_path: Path, helper: TestedHelper, cause: str
) -> None:
    case = CAUSES[cause]
    registry = case.get("registry", REGISTRY_HOST)
    env = user_env(stand_in, helper, tmp_path, AWS_MAX_ATTEMPTS="1", **case.get("env", {}))
    stand_in.refuse(case.get("refuse"))
    try:
        done = stand_in.run(["docker-credential-ecr-login", case.get("verb", "get")], env, input=registry)
    finally:
        stand_in.refuse(None)
    log_file = tmp_path / "ecr-cache" / "log" / "ecr-login.log"
    log = log_file.read_text() if log_file.exists() else ""
    said = done.stdout.strip() or done.stderr.strip()
    errors = judged(case.get("verb", "get"), registry, done.returncode, said, log)
    table = HELPER_LOG_CAUSES if any(c.name == cause for c in HELPER_LOG_CAUSES) else HELPER_ANSWER_CAUSES
    [expected] = [c for c in table if c.name == cause]
    assert [e.fix for e in errors] == [expected.fix], (said, log)


def test_a_healthy_get_is_judged_ok_with_every_helper(stand_in: StandIn, tmp_path: Path, helper: TestedHelper) -> None:
    """The negative control of the one above: nothing refused, nothing named."""
    done = stand_in.run(
        ["docker-credential-ecr-login", "get"], user_env(stand_in, helper, tmp_path), input=REGISTRY_HOST
    )
    answer = json.loads(done.stdout)
    facts = copy.deepcopy(GOOD_HOST)
    facts["consumers"][0]["gets"][0] = {
        "registry": REGISTRY_HOST,
        "rc": done.returncode,
        "username": answer["Username"],
        "secret_length": len(answer["Secret"]),
        "log": (tmp_path / "ecr-cache" / "log" / "ecr-login.log").read_text(),
    }
    assert [f for f in judge(facts, [REGISTRY_HOST]) if f.severity == "error"] == []
