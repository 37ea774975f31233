"""The mirror's tag rules, platform filter and pull-through cache report, without a registry: each rule
kind, their precedence, the reasons a dry run gives, a filtered index and the cache rules it reads.
tests/test_mirror.py runs them against a real source registry and the stand-in."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import semver
import yaml

from ecrkit import mirror
from ecrkit.errors import EcrkitError, FileFormatError, InputError
from ecrkit.registry import Manifest
from tests.conftest import ROOT

TARGET = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
SOURCE_TAGS = ["1.0.0", "1.1.0", "1.1.1-rc.1", "1.2.0", "v1.3", "2.0.0", "2.1.0-alpine", "latest", "edge", "nightly-7"]
INDEX = "application/vnd.oci.image.index.v1+json"


def planned(image: dict[str, Any], created: dict[str, str] | None = None, **top: Any) -> mirror.Plan:
    listed: list[str] = []

    def tags_of(host: str, repository: str) -> list[str]:
        listed.append(repository)
        return SOURCE_TAGS

    def created_of(host: str, repository: str, platforms: tuple[str, ...], tags: list[str]) -> dict[str, str]:
        assert created is not None
        asked.append(tags)
        return {tag: created[tag] for tag in tags if tag in created}

    asked: list[list[str]] = []
    config = mirror.check({"target": TARGET, "images": [{"source": "org/app", **image}], **top}, "mirror.yml")
    result = mirror.plan(config, tags_of, created_of=created_of)
    planned.listed, planned.asked = listed, asked  # type: ignore[attr-defined]
    return result


def tags(plan: mirror.Plan) -> list[str]:
    return [job.tag for job in plan.copies]


def steps(plan: mirror.Plan) -> dict[str, mirror.Step]:
    (selection,) = plan.selections
    return {step.rule: step for step in selection.steps}


# -- each rule kind ---------------------------------------------------------------------------------


def test_exact_tags_are_copied_as_named_without_listing_the_source() -> None:
    plan = planned({"tags": ["latest", "9.9"]})
    assert tags(plan) == ["latest", "9.9"]
    assert planned.listed == []  # type: ignore[attr-defined]


def test_shell_patterns_select_from_the_source_list() -> None:
    assert tags(planned({"tags": ["1.1.*", "edge"]})) == ["1.1.0", "1.1.1-rc.1", "edge"]


def test_include_selects_by_regular_expression_and_exclude_drops() -> None:
    plan = planned({"include": [r"^v?1\.\d+(\.\d+)?$", "^nightly"], "exclude": ["^nightly", r"\.0\.0$"]})
    assert tags(plan) == ["1.1.0", "1.2.0", "v1.3"]  # 1.0.0 and nightly-7 excluded
    found = steps(plan)
    assert found["exclude '^nightly'"].dropped == (("nightly-7", "matches"),)
    assert found["exclude '\\\\.0\\\\.0$'"].dropped == (("1.0.0", "matches"),)


def test_a_semver_range_keeps_versions_within_it() -> None:
    plan = planned({"semver": ">=1.1, <2"})
    # v1.3 is 1.3.0; 1.1.1-rc.1 is a pre-release of 1.1.1, above 1.1.0; not-versions and 2.x are out
    assert tags(plan) == ["1.1.0", "1.1.1-rc.1", "1.2.0", "v1.3"]
    dropped = dict(steps(plan)["semver '>=1.1, <2'"].dropped)
    assert dropped == {"1.0.0": "outside the range", "2.0.0": "outside the range", "2.1.0-alpine": "outside the range",
                       "edge": "not a version", "latest": "not a version", "nightly-7": "not a version"}  # fmt: skip


def test_latest_n_by_semver_order() -> None:
    plan = planned({"latest": 2})
    assert tags(plan) == ["2.0.0", "2.1.0-alpine"]
    step = steps(plan)["latest 2 by semver"]
    assert [tag for tag, _ in step.selected] == ["2.1.0-alpine", "2.0.0"]  # newest first
    assert dict(step.dropped)["latest"] == "not a version: no semver order"
    assert dict(step.dropped)["v1.3"] == "version 1.3.0: older than the 2 kept"


def test_latest_n_by_creation_time_asks_only_for_the_candidates() -> None:
    created = {"1.0.0": "2025-03-01T00:00:00Z", "1.1.0": "2024-01-01T10:00:00.123456789Z",
               "1.2.0": "2025-01-01T00:00:00+02:00", "2.0.0": "2026-01-01T00:00:00Z"}  # fmt: skip
    plan = planned({"tags": ["1.*"], "exclude": ["rc"], "latest": 2, "latest_by": "created"}, created)
    assert planned.asked == [["1.0.0", "1.1.0", "1.2.0"]]  # type: ignore[attr-defined]
    assert tags(plan) == ["1.0.0", "1.2.0"]
    step = steps(plan)["latest 2 by created"]
    assert step.selected == (("1.0.0", "created 2025-03-01T00:00:00Z, newest 1 of 3"),
                             ("1.2.0", "created 2025-01-01T00:00:00+02:00, newest 2 of 3"))  # fmt: skip
    assert step.dropped == (("1.1.0", "created 2024-01-01T10:00:00.123456789Z: older than the 2 kept"),)
    no_time = planned({"tags": ["1.0.0", "edge*"], "latest": 1, "latest_by": "created"}, {})
    assert tags(no_time) == ["1.0.0"]  # the exact tag stays; edge has no creation time
    assert steps(no_time)["latest 1 by created"].dropped == (("edge", "no creation time in its config"),)


# -- precedence -------------------------------------------------------------------------------------


def test_the_rules_apply_in_the_documented_order() -> None:
    """Exact names are never dropped; patterns and include select; exclude, semver and then latest narrow,
    so `latest` counts what the others left."""
    plan = planned({"tags": ["edge", "latest", "*"], "exclude": ["alpine", "^2.0"], "semver": ">=1", "latest": 2,
                    "include": ["^nightly"]})  # fmt: skip
    assert tags(plan) == ["edge", "latest", "1.2.0", "v1.3"]
    # Without exclude, 2.0.0 and 2.1.0-alpine would be the latest 2 (a negative control of the order).
    assert tags(planned({"tags": ["*"], "semver": ">=1", "latest": 2})) == ["2.0.0", "2.1.0-alpine"]
    assert list(steps(plan)) == ["tags (exact)", "tags '*'", "include '^nightly'", "exclude 'alpine'",
                                 "exclude '^2.0'", "semver '>=1'", "latest 2 by semver"]  # fmt: skip


def test_without_pattern_or_include_every_tag_is_a_candidate() -> None:
    plan = planned({"tags": ["latest"], "semver": ">=2"})
    assert tags(plan) == ["latest", "2.0.0", "2.1.0-alpine"]  # a pre-release of 2.1.0: above 2.0.0
    assert "every tag of the source" in steps(plan)


def test_the_precedence_is_the_schema_s_and_the_docs() -> None:
    image_schema = mirror.SCHEMA["properties"]["images"]["items"]
    assert image_schema["description"] == mirror.PRECEDENCE
    docs = " ".join((ROOT / "docs" / "mirroring.md").read_text().split())
    assert " ".join(mirror.PRECEDENCE.split()) in docs


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ({"exclude": ["rc"]}, "images/0: needs a tag rule: one of tags, include, semver, latest"),
        ({"tags": ["1"], "latest_by": "created"}, "'latest' is a dependency of 'latest_by'"),
        ({"latest": 0}, "images/0/latest: must be at least 1"),
        ({"latest": 2, "latest_by": "age"}, "images/0/latest_by: must be one of ['semver', 'created']"),
        ({"tags": ["1"], "platforms": ["amd64"]}, "images/0/platforms/0: must be os/architecture[/variant]"),
        ({"include": ["("]}, "images[0].include[0]: '('"),
        ({"tags": ["1"], "exclude": ["ok", "[z-a]"]}, "images[0].exclude[1]: '[z-a]'"),
        ({"semver": "~1.2"}, "images[0].semver: '~1.2'"),
        ({"semver": ">=1.2,"}, "comparisons joined by commas"),
    ],
)
def test_bad_rules_are_refused_naming_the_place(tmp_path: Path, image: dict[str, Any], expected: str) -> None:
    path = tmp_path / "mirror.yml"
    path.write_text(yaml.safe_dump({"target": TARGET, "images": [{"source": "org/app", **image}]}))
    with pytest.raises((FileFormatError, InputError)) as error:
        mirror.load(str(path))
    assert expected in str(error.value)


def test_rules_that_leave_nothing_are_reported_as_unmatched() -> None:
    assert planned({"semver": ">=7"}).unmatched == ("docker.io/org/app: no tag is left by the rules",)
    assert planned({"include": ["^x"], "tags": ["1.0.0"]}).unmatched == ("docker.io/org/app include '^x'",)
    assert planned({"tags": ["1.0.0"], "semver": ">=7"}).unmatched == ()  # the named tag is still copied


# -- what a dry run says ----------------------------------------------------------------------------


def test_a_dry_run_says_per_image_which_rule_selected_what_and_why() -> None:
    plan = planned({"tags": ["edge", "1.*"], "exclude": ["rc"], "latest": 1})
    assert plan.selections[0].lines() == [
        "docker.io/org/app  tags (exact): selected edge (named in the config)",
        "docker.io/org/app  tags '1.*': selected 1.0.0, 1.1.0, 1.1.1-rc.1, 1.2.0 (matches the shell pattern)",
        "docker.io/org/app  exclude 'rc': dropped 1.1.1-rc.1 (matches)",
        "docker.io/org/app  latest 1 by semver: selected 1.2.0 (version 1.2.0, newest 1 of 3); "
        "dropped 1.1.0 (version 1.1.0: older than the 1 kept), 1.0.0 (version 1.0.0: older than the 1 kept)",
        "docker.io/org/app  to copy: edge, 1.2.0",
    ]


# -- platforms --------------------------------------------------------------------------------------


def entry(platform: dict[str, str], body: bytes, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    found = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(body),
             "digest": "sha256:" + hashlib.sha256(body).hexdigest(), "platform": platform}  # fmt: skip
    return {**found, "annotations": annotations} if annotations else found


AMD64 = entry({"os": "linux", "architecture": "amd64"}, b"amd64")
ARM64 = entry({"os": "linux", "architecture": "arm64", "variant": "v8"}, b"arm64")
ARMV7 = entry({"os": "linux", "architecture": "arm", "variant": "v7"}, b"armv7")
ATTACHED = {"vnd.docker.reference.digest": ARM64["digest"], "vnd.docker.reference.type": "attestation-manifest"}
ATTESTATION = entry({"os": "unknown", "architecture": "unknown"}, b"attestation of arm64", ATTACHED)
LISTED = {
    "schemaVersion": 2,
    "mediaType": INDEX,
    "annotations": {"a": "b"},
    "manifests": [AMD64, ARM64, ATTESTATION, ARMV7],
}
SOURCE_INDEX = Manifest(json.dumps(LISTED, indent=2).encode(), INDEX)


def test_a_filtered_index_lists_the_wanted_platforms_and_their_attestations() -> None:
    filtered = mirror.filter_index(SOURCE_INDEX, ("linux/arm64", "linux/arm/v6"))
    assert isinstance(filtered, mirror.FilteredIndex)
    document = json.loads(filtered.body)
    assert document["manifests"] == [ARM64, ATTESTATION]  # the entries unchanged: their digests are the source's
    assert document["annotations"] == {"a": "b"}
    assert (filtered.kept, filtered.total, filtered.source_digest) == (1, 3, SOURCE_INDEX.digest)
    assert filtered.digest != SOURCE_INDEX.digest
    again = mirror.filter_index(SOURCE_INDEX, ("linux/arm64", "linux/arm/v6"))
    assert again is not None and again.body == filtered.body  # the same filter, the same digest
    assert "1 of 3 platforms: a filtered index, a new digest; the source's is" in mirror._describe(filtered, 1)


def test_the_default_and_a_filter_that_keeps_everything_keep_the_source_index() -> None:
    assert mirror.filter_index(SOURCE_INDEX, ()) is SOURCE_INDEX
    assert mirror.filter_index(SOURCE_INDEX, ("linux/amd64", "linux/arm64", "linux/arm")) is SOURCE_INDEX
    image = Manifest(b"{}", "application/vnd.oci.image.manifest.v1+json")
    assert mirror.filter_index(image, ("linux/amd64",)) is image  # not an index: copied as it is
    assert mirror.filter_index(SOURCE_INDEX, ("windows/amd64",)) is None
    assert mirror.filter_index(SOURCE_INDEX, ("linux/arm/v8",)) is None  # a variant must match when named


def test_platforms_come_from_the_image_or_the_config() -> None:
    plan = planned({"tags": ["1"], "platforms": ["linux/arm64"]}, platforms=["linux/amd64"])
    assert plan.copies[0].platforms == ("linux/arm64",)
    assert planned({"tags": ["1"]}, platforms=["linux/amd64"]).copies[0].platforms == ("linux/amd64",)
    assert planned({"tags": ["1"]}).copies[0].platforms == ()


def test_the_summary_says_a_digest_is_not_the_source_s() -> None:
    outcome = mirror.Outcome([mirror.Result("copied", "a", "x", filtered=True), mirror.Result("unchanged", "b")])
    assert (
        outcome.summary()
        == "1 copied, 1 unchanged, 0 failed; 1 with platforms filtered (a new digest, not the source's)"
    )
    assert mirror.Outcome([mirror.Result("copied", "a")]).summary() == "1 copied, 0 failed"
    summary = json.loads(outcome.as_json(0))
    assert summary["platforms_filtered"] == 1
    assert summary["results"][0]["filtered"] is True
    assert "filtered" not in summary["results"][1]


# -- the pull-through cache first --------------------------------------------------------------------


RULES = [
    {"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": "registry-1.docker.io", "upstreamRegistry": "docker-hub"},
    {"ecrRepositoryPrefix": "quay-prom", "upstreamRegistryUrl": "quay.io", "upstreamRepositoryPrefix": "prometheus"},
]


def test_the_images_a_pull_through_cache_rule_serves_are_named() -> None:
    config = {"target": TARGET, "images": [
        {"source": "alpine", "tags": ["3.20"]},
        {"source": "quay.io/prometheus/node-exporter", "tags": ["v1.8.2"]},
        {"source": "quay.io/other/tool", "tags": ["1"]},  # the quay rule's prefix is prometheus/
        {"source": "ghcr.io/org/app", "tags": ["1"]},  # no rule for ghcr.io
    ]}  # fmt: skip
    served = mirror.served_by_cache(config, RULES)
    assert [(cached.image, cached.rule, cached.pull) for cached in served] == [
        ("docker.io/library/alpine", "hub", f"{TARGET}/hub/library/alpine"),
        ("quay.io/prometheus/node-exporter", "quay-prom", f"{TARGET}/quay-prom/node-exporter"),
    ]
    assert "a pull-through cache serves it: pull" in served[0].line()
    assert mirror.served_by_cache(config, []) == []  # no rule, nothing served
    docker_io = [{**RULES[0], "upstreamRegistryUrl": "https://index.docker.io/"}]
    assert [cached.image for cached in mirror.served_by_cache(config, docker_io)] == ["docker.io/library/alpine"]


def test_semver_rules_need_semver_3() -> None:
    """The semver library is loaded by the first semver rule only; an old one is named, not a traceback."""
    assert mirror.version_of("v1.8") is not None
    mirror._semver.cache_clear()
    real = semver.__version__
    semver.__version__ = "2.10.2"
    try:
        with pytest.raises(EcrkitError, match=re.escape("found 2.10.2 (Debian 12's python3-semver is 2.10)")):
            mirror.version_of("1.0")
    finally:
        semver.__version__ = real
        mirror._semver.cache_clear()


def test_a_long_run_of_tags_is_cut_short() -> None:
    many = tuple((f"t{number}", "why") for number in range(25))
    assert mirror._grouped(many) == "t0, t1, t2, t3, t4, t5, t6, t7, t8, t9 and 15 more (why)"
    assert mirror._grouped(many[:11]) == ", ".join(f"t{number}" for number in range(11)) + " (why)"
