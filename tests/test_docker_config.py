"""The config.json merge: unit cases and properties (no foreign key lost, idempotent, reversible)."""

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecrkit.errors import FileFormatError
from ecrkit.renderers import docker_config
from ecrkit.settings import CredentialRule

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
OTHER = "210987654321.dkr.ecr.eu-west-1.amazonaws.com"

FOREIGN = {
    "auths": {"ghcr.io": {"auth": "dXNlcjpwYXNz"}},
    "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
    "credHelpers": {"gcr.io": "gcloud"},
    "currentContext": "remote",
    "psFormat": "table {{.ID}}",
}


def test_named_registry_is_added_and_everything_else_survives() -> None:
    merged = docker_config.merge(FOREIGN, CredentialRule.build([ECR]))
    assert merged["credHelpers"] == {"gcr.io": "gcloud", ECR: "ecr-login"}
    assert {k: v for k, v in merged.items() if k != "credHelpers"} == {
        k: v for k, v in FOREIGN.items() if k != "credHelpers"
    }
    assert "credsStore" not in merged


def test_merge_does_not_mutate_its_input() -> None:
    before = json.loads(json.dumps(FOREIGN))
    docker_config.merge(FOREIGN, CredentialRule.build([ECR]))
    assert before == FOREIGN


def test_absent_removes_only_what_the_rule_adds() -> None:
    rule = CredentialRule.build([ECR], force_creds_store=True)
    assert docker_config.remove(docker_config.merge(FOREIGN, rule), rule) == FOREIGN


def test_absent_keeps_an_entry_someone_pointed_elsewhere() -> None:
    config = {"credHelpers": {ECR: "other-helper"}, "credsStore": "desktop"}
    rule = CredentialRule.build([ECR], force_creds_store=True)
    assert docker_config.remove(config, rule) == config


def test_render_keeps_the_existing_bytes_when_nothing_changes() -> None:
    compact = json.dumps({"credHelpers": {ECR: "ecr-login"}, "auths": {}})
    assert docker_config.render(compact, CredentialRule.build([ECR]), path="x") == compact


def test_render_uses_dockers_own_layout() -> None:
    text = docker_config.render(None, CredentialRule.build([]), path="x")
    assert text == '{\n\t"credsStore": "ecr-login"\n}\n'


def test_an_empty_file_counts_as_an_empty_object() -> None:
    assert json.loads(docker_config.render("", CredentialRule.build([]), path="x")) == {"credsStore": "ecr-login"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"auths": {', "not valid JSON"),
        ("[1, 2]", "top level is a JSON list"),
        ('{"credHelpers": ["ecr-login"]}', '"credHelpers" is a JSON list'),
    ],
)
def test_unparsable_files_are_refused_with_path_and_problem(text: str, problem: str) -> None:
    with pytest.raises(FileFormatError) as caught:
        docker_config.render(text, CredentialRule.build([ECR]), path="/home/ci/.docker/config.json")
    assert "/home/ci/.docker/config.json" in str(caught.value)
    assert problem in str(caught.value)


def test_replace_invalid_starts_from_an_empty_object() -> None:
    text = docker_config.render("{oops", CredentialRule.build([ECR]), path="x", replace_invalid=True)
    assert json.loads(text) == {"credHelpers": {ECR: "ecr-login"}}


def test_secrets_are_detected_and_redacted() -> None:
    text = json.dumps(FOREIGN)
    assert docker_config.has_secrets(FOREIGN)
    assert not docker_config.has_secrets({"auths": {"ghcr.io": {}}})
    redacted = docker_config.redact(text)
    assert "dXNlcjpwYXNz" not in redacted
    assert json.loads(redacted)["auths"]["ghcr.io"]["auth"] == "<redacted>"
    assert docker_config.redact("{not json") == "<redacted>\n"


# Arbitrary JSON documents shaped like config.json, with arbitrary foreign keys and helpers.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
configs = st.fixed_dictionaries(
    {},
    optional={
        "credHelpers": st.dictionaries(st.sampled_from([ECR, OTHER, "gcr.io", "public.ecr.aws"]), st.text(max_size=8)),
        "credsStore": st.text(max_size=8),
        "auths": st.dictionaries(st.text(max_size=8), st.dictionaries(st.text(max_size=5), st.text(max_size=5))),
    },
).flatmap(
    lambda base: st.dictionaries(st.text(max_size=10), json_values, max_size=4).map(lambda extra: {**extra, **base})
)
rules = st.builds(
    CredentialRule.build,
    st.lists(st.sampled_from([ECR, OTHER, "public.ecr.aws"]), max_size=3),
    include_public=st.booleans(),
    force_creds_store=st.booleans(),
)
OWNED = ("credsStore", "credHelpers")


@given(configs, rules)
def test_a_merge_never_drops_a_foreign_key(config: dict[str, Any], rule: CredentialRule) -> None:
    merged = docker_config.merge(config, rule)
    for key, value in config.items():
        if key not in OWNED:
            assert merged[key] == value
    for host, helper in config.get("credHelpers", {}).items():
        assert merged["credHelpers"][host] == (helper if host not in rule.registries else "ecr-login")


@given(configs, rules)
def test_merging_twice_equals_merging_once(config: dict[str, Any], rule: CredentialRule) -> None:
    once = docker_config.merge(config, rule)
    assert docker_config.merge(once, rule) == once
    text = docker_config.render(json.dumps(config), rule, path="x")
    assert docker_config.render(text, rule, path="x") == text


@given(configs, rules)
def test_the_merged_file_names_the_helper_for_every_registry(config: dict[str, Any], rule: CredentialRule) -> None:
    merged = json.loads(docker_config.render(json.dumps(config), rule, path="x"))
    assert all(merged["credHelpers"][host] == "ecr-login" for host in rule.registries)
    assert (merged.get("credsStore") == "ecr-login") == (rule.creds_store or config.get("credsStore") == "ecr-login")


@given(configs, rules)
def test_absent_after_present_restores_a_config_ecrkit_had_not_touched(
    config: dict[str, Any], rule: CredentialRule
) -> None:
    untouched = {k: v for k, v in config.items() if k not in OWNED}
    assert docker_config.remove(docker_config.merge(untouched, rule), rule) == untouched
