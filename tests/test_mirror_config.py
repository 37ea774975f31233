"""The mirror config's quick schema check (ecrkit.mirror.conforms) never passes what jsonschema refuses,
passes what it accepts, and leaves jsonschema unloaded for a good config."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import jsonschema
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecrkit import mirror

TARGET = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
KEYS = st.sampled_from(["target", "prefix", "plain_http", "images", "source", "tags", "repository", "colour", ""])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=4))
ANYTHING = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)


def mostly(right: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`right` four times in five, else anything."""
    return st.integers(0, 4).flatmap(lambda draw: right if draw else ANYTHING)


STRINGS = mostly(st.text(min_size=1, max_size=3))
STRANGER = st.dictionaries(KEYS | st.just("colour"), ANYTHING, min_size=1, max_size=1)  # a key maybe unknown


def lists(items: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return mostly(st.lists(items, min_size=1, max_size=3))


def objects(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
    """The object, and now and then one with a key more (or one replaced)."""
    right = st.fixed_dictionaries(required, optional=optional)
    odd = st.tuples(right, STRANGER).map(lambda pair: {**pair[0], **pair[1]})
    return st.integers(0, 4).flatmap(lambda draw: right if draw else odd)


IMAGES = objects({"source": STRINGS, "tags": lists(STRINGS)}, {"repository": STRINGS})
# Configs near the schema's edge: every part right, or some of them wrong in some way.
CONFIGS = mostly(
    objects({"target": STRINGS, "images": lists(IMAGES)}, {"prefix": STRINGS, "plain_http": lists(STRINGS)})
)


def jsonschema_accepts(config: Any) -> bool:
    return jsonschema.Draft202012Validator(mirror.SCHEMA).is_valid(config)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONFIGS)
def test_the_quick_check_agrees_with_jsonschema(config: Any) -> None:
    assert mirror.conforms(config, mirror.SCHEMA) == jsonschema_accepts(config)


def test_the_quick_check_defers_on_keywords_it_does_not_know() -> None:
    assert not mirror.conforms("x", {"type": "string", "pattern": "^y"})
    assert not mirror.conforms(1, {"type": "integer"})
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
