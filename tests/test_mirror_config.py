"""The mirror config's quick schema check (ecrkit.mirror.conforms) never passes what jsonschema refuses,
passes what it accepts, and leaves jsonschema unloaded for a good config."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecrkit import mirror

TARGET = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
KEYS = st.sampled_from(["target", "prefix", "plain_http", "platforms", "images", "source", "tags", "include", "exclude",
                        "semver", "latest", "latest_by", "repository", "colour", ""])  # fmt: skip
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=4))
ANYTHING = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)


def mostly(right: st.SearchStrategy[Any], odds: int = 4) -> st.SearchStrategy[Any]:
    """`right` `odds` times in `odds` + 1, else anything."""
    return st.integers(0, odds).flatmap(lambda draw: right if draw else ANYTHING)


STRANGER = st.dictionaries(KEYS | st.just("colour"), ANYTHING, min_size=1, max_size=1)  # a key maybe unknown


def configs(odds: int) -> st.SearchStrategy[Any]:
    """Configs near the schema's edge: every part right, or some of them wrong in some way, each part wrong
    once in `odds` + 1."""
    strings = mostly(st.text(min_size=1, max_size=3), odds)

    def lists(items: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return mostly(st.lists(items, min_size=1, max_size=3), odds)

    def objects(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
        """The object, and now and then one with a key more (or one replaced)."""
        right = st.fixed_dictionaries(required, optional=optional)
        odd = st.tuples(right, STRANGER).map(lambda pair: {**pair[0], **pair[1]})
        return st.integers(0, odds).flatmap(lambda draw: right if draw else odd)

    def either(right: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.integers(0, odds).flatmap(lambda draw: right if draw else wrong)

    platforms = lists(
        either(
            st.sampled_from(["linux/amd64", "linux/arm64/v8", "windows/amd64"]),
            mostly(st.sampled_from(["linux", "Linux/amd64", "a/b/c/d", "linux/arm64 "]), 1),
        )
    )
    counts = either(st.integers(1, 5), mostly(st.sampled_from([-1, 0, 0.0, 2.0, 2.5, True]), 1))
    ordering = either(st.sampled_from(["semver", "created"]), mostly(st.just("newest"), 1))
    # Every tag rule optional: an image with none of tags, include, semver and latest is refused (anyOf), and
    # latest_by without latest too (dependentRequired).
    rules = {"tags": lists(strings), "include": lists(strings), "exclude": lists(strings), "semver": strings,
             "latest": counts, "latest_by": ordering}  # fmt: skip
    image = objects({"source": strings}, {**rules, "platforms": platforms, "repository": strings})
    return mostly(
        objects(
            {"target": strings, "images": lists(image)},
            {"prefix": strings, "plain_http": lists(strings), "platforms": platforms},
        ),
        odds,
    )


CONFIGS = st.one_of(configs(4), configs(40))


def jsonschema_accepts(config: Any) -> bool:
    return jsonschema.Draft202012Validator(mirror.SCHEMA).is_valid(config)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONFIGS)
def test_the_quick_check_agrees_with_jsonschema(config: Any) -> None:
    assert mirror.conforms(config, mirror.SCHEMA) == jsonschema_accepts(config)


def test_the_quick_check_defers_on_keywords_it_does_not_know() -> None:
    assert not mirror.conforms("x", {"type": "string", "pattern": "^y"})
    assert not mirror.conforms(1, {"type": "number"})
    assert not mirror.conforms([], {"anyOf": [{"type": "array", "maxItems": 1}]})
    assert not mirror.conforms({}, {"additionalProperties": {"type": "string"}})


def test_a_good_config_is_checked_without_loading_jsonschema(tmp_path: Any) -> None:
    path = tmp_path / "mirror.yml"
    path.write_text(yaml.safe_dump({"target": TARGET, "prefix": "hub", "plain_http": ["registry.local:5000"],
                                    "images": [{"source": "alpine", "tags": ["3.20", "3.*"]}]}))  # fmt: skip
    code = (
        "import json, sys; from ecrkit import mirror; "
        f"config = mirror.load({str(path)!r}); "
        "print(json.dumps(['jsonschema' in sys.modules, config['images'][0]['tags']]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [False, ["3.20", "3.*"]]


GOOD_IMAGE = {"source": "org/app", "tags": ["1.0", "2.*"], "include": ["^v1"], "exclude": ["-rc"], "semver": ">=1, <3",
              "latest": 2, "latest_by": "created", "platforms": ["linux/amd64", "linux/arm/v7"]}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "accepted"),
    [
        ({}, True),
        ({"latest": 2.0}, True),  # JSON Schema's integer: a float without a fraction is one
        ({"tags": None}, True),  # include, semver and latest still select
        ({"tags": None, "include": None, "semver": None, "latest": None, "latest_by": None}, False),  # no tag rule
        ({"tags": None, "include": None, "semver": None}, True),  # latest alone: the N newest of every tag
        ({"latest": None}, False),  # latest_by needs latest
        ({"latest": 0}, False),
        ({"latest": True}, False),
        ({"latest": 2.5}, False),
        ({"latest_by": "newest"}, False),
        ({"platforms": ["linux"]}, False),
        ({"platforms": ["Linux/amd64"]}, False),
        ({"platforms": ["linux/arm/v7/x"]}, False),
        ({"platforms": ["linux/arm64\n"]}, False),
        ({"platforms": []}, False),
        ({"include": []}, False),
        ({"exclude": [""]}, False),
        ({"semver": ""}, False),
    ],
)
def test_each_rule_at_its_edge(change: dict[str, Any], accepted: bool) -> None:
    image = {key: value for key, value in {**GOOD_IMAGE, **change}.items() if value is not None}
    config = {"target": TARGET, "platforms": ["linux/arm64"], "images": [image]}
    assert jsonschema_accepts(config) == accepted
    assert mirror.conforms(config, mirror.SCHEMA) == accepted
