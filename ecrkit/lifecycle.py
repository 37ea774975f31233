"""ECR lifecycle policies from presets and raw rules, validated before any API call.

ECR checks a policy only when it is put, one repository at a time, with a terse message. These
are its rules (AWS ECR user guide, "Lifecycle policy properties"), checked up front so that a bad
rule stops the run before anything changes, with an error naming the rule.

Presets, each a one-key mapping, in priority order (10, 20, ...):
  expire_untagged: {days: N}
  expire_tagged: {prefixes: [...] | patterns: [...], days: N}
  archive_unpulled: {days: N, prefixes?: [...] | patterns?: [...]}  # to the archive storage class
  keep_last: {count: N}         # any tag status: must come last
  rule: {selection: ..., action: ..., description?, rulePriority?}   # a raw ECR rule

The archive storage class (2025-11): a `transition` action (`targetStorageClass: archive`) takes
images of the standard class by count, push age or pull age (`sinceImagePulled`); archived images
(`storageClass: archive`) can only be expired, by `sinceImageTransitioned`, after ECR's minimum stay
of 90 days. Expire and transition rules mix in one policy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ecrkit.errors import InputError

TAG_STATUSES = ("tagged", "untagged", "any")
COUNT_TYPES = ("imageCountMoreThan", "sinceImagePushed", "sinceImagePulled", "sinceImageTransitioned")
DAY_COUNTS = ("sinceImagePushed", "sinceImagePulled", "sinceImageTransitioned")
STORAGE_CLASSES = ("standard", "archive")
ACTIONS = ("expire", "transition")
ARCHIVE = "archive"  # the one targetStorageClass of a transition
ARCHIVE_MINIMUM_DAYS = 90  # an archived image stays at least this long
# What each storage class's images can be selected by, and for which action.
ALLOWED: dict[tuple[str, str], tuple[str, ...]] = {
    ("standard", "expire"): ("imageCountMoreThan", "sinceImagePushed", "sinceImagePulled"),
    ("standard", "transition"): ("imageCountMoreThan", "sinceImagePushed", "sinceImagePulled"),
    ("archive", "expire"): ("sinceImageTransitioned",),
}
POLICY_LENGTH = (100, 30720)  # characters, botocore's LifecyclePolicyText
PRESETS = ("expire_untagged", "expire_tagged", "archive_unpulled", "keep_last", "rule")


def policy(entries: object, source: str) -> str | None:
    """The lifecycle policy text for a list of presets and rules; None for no entries."""
    if entries is None or entries == []:
        return None
    if not isinstance(entries, list):
        raise InputError(source, entries, f"a list of lifecycle entries, each one of {', '.join(PRESETS)}")
    rules = [_expand(entry, f"{source}[{index}]", (index + 1) * 10) for index, entry in enumerate(entries)]
    _check_order(rules, source)
    text = json.dumps({"rules": rules}, sort_keys=True)
    if len(text) > POLICY_LENGTH[1]:
        raise InputError(source, f"{len(text)} characters", f"a policy of at most {POLICY_LENGTH[1]} characters")
    # ECR's minimum length is met by any valid rule (a bare expire rule is over 100 characters).
    return text


def _expand(entry: object, source: str, priority: int) -> dict[str, Any]:
    if not isinstance(entry, Mapping) or len(entry) != 1 or next(iter(entry)) not in PRESETS:
        raise InputError(source, entry, f"a mapping with one key, one of {', '.join(PRESETS)}")
    ((name, options),) = entry.items()
    options = _mapping(options, f"{source}.{name}")
    if name == "rule":
        rule = {"rulePriority": priority, **options}
    elif name == "archive_unpulled":
        _only(options, {"days", "prefixes", "patterns"}, f"{source}.{name}")
        selection = _tags(options, f"{source}.{name}", "any")
        selection.update(countType="sinceImagePulled", countUnit="days")
        selection["countNumber"] = _positive(options, "days", f"{source}.{name}")
        rule = {"rulePriority": priority, "description": "", "selection": selection}
        rule["action"] = {"type": "transition", "targetStorageClass": ARCHIVE}
        rule["description"] = _describe(selection, "transition")
    else:
        rule = {"rulePriority": priority, "description": "", "action": {"type": "expire"}}
        rule["selection"] = _preset_selection(name, options, f"{source}.{name}")
        rule["description"] = _describe(rule["selection"], "expire")
    return _validated(rule, source)


def _preset_selection(name: str, options: dict[str, Any], source: str) -> dict[str, Any]:
    if name == "keep_last":
        _only(options, {"count"}, source)
        return {
            "tagStatus": "any",
            "countType": "imageCountMoreThan",
            "countNumber": _positive(options, "count", source),
        }
    days = {"countType": "sinceImagePushed", "countUnit": "days", "countNumber": _positive(options, "days", source)}
    if name == "expire_untagged":
        _only(options, {"days"}, source)
        return {"tagStatus": "untagged", **days}
    _only(options, {"days", "prefixes", "patterns"}, source)
    return {**_tags(options, source, "tagged"), **days}


def _tags(options: Mapping[str, Any], source: str, untagged_status: str) -> dict[str, Any]:
    """tagStatus tagged with the prefixes or patterns given; `untagged_status` when none is."""
    lists = {"prefixes": "tagPrefixList", "patterns": "tagPatternList"}
    chosen = {lists[key]: options[key] for key in lists if key in options}
    return {"tagStatus": "tagged" if chosen else untagged_status, **chosen}


def _describe(selection: Mapping[str, Any], action: str) -> str:
    tags = selection.get("tagPrefixList") or selection.get("tagPatternList")
    if selection["countType"] == "imageCountMoreThan":
        return f"keep the last {selection['countNumber']} images"
    status = selection["tagStatus"]
    which = f"tags {', '.join(map(str, tags))}" if tags else f"{'all' if status == 'any' else status} images"
    if action == "transition":
        return f"archive {which} not pulled for {selection['countNumber']} days"
    return f"expire {which} after {selection['countNumber']} days"


def _validated(rule: dict[str, Any], source: str) -> dict[str, Any]:
    _only(rule, {"rulePriority", "description", "selection", "action"}, source)
    priority = _positive(rule, "rulePriority", source)
    where = f"{source} (priority {priority})"
    action = _action(rule.get("action"), f"{where}.action")
    if not isinstance(rule.get("description", ""), str):
        raise InputError(f"{where}.description", rule["description"], "a string")
    selection = _mapping(rule.get("selection"), f"{where}.selection")
    keys = {"tagStatus", "tagPrefixList", "tagPatternList", "storageClass", "countType", "countUnit", "countNumber"}
    _only(selection, keys, where)
    status = selection.get("tagStatus")
    if status not in TAG_STATUSES:
        raise InputError(f"{where}.tagStatus", status, f"one of {', '.join(TAG_STATUSES)}")
    lists = [key for key in ("tagPrefixList", "tagPatternList") if key in selection]
    if status == "tagged" and len(lists) != 1:
        raise InputError(where, selection, "a tagged rule with tag prefixes or tag patterns (one of the two)")
    if status != "tagged" and lists:
        raise InputError(where, selection, f"no tag prefixes or patterns in a rule for {status} images")
    for key in lists:
        if not selection[key] or not all(isinstance(tag, str) and tag for tag in selection[key]):
            raise InputError(f"{where}.{key}", selection[key], "a non-empty list of non-empty strings")
    count_type, unit = selection.get("countType"), selection.get("countUnit")
    if count_type not in COUNT_TYPES:
        raise InputError(f"{where}.countType", count_type, f"one of {', '.join(COUNT_TYPES)}")
    if count_type in DAY_COUNTS and unit != "days":
        raise InputError(f"{where}.countUnit", unit, f"days (needed by {count_type})")
    if count_type not in DAY_COUNTS and unit is not None:
        raise InputError(f"{where}.countUnit", unit, f"no unit with {count_type}")
    count = _positive(selection, "countNumber", where)
    storage = selection.get("storageClass", "standard")
    if storage not in STORAGE_CLASSES:
        raise InputError(f"{where}.storageClass", storage, f"one of {', '.join(STORAGE_CLASSES)}")
    allowed = ALLOWED.get((storage, action), ())
    if count_type not in allowed:
        accepted = f"one of {', '.join(allowed)}" if allowed else "an expire action: archived images can only expire"
        raise InputError(f"{where}.countType", count_type, f"{accepted} (for a {action} of {storage} images)")
    if count_type == "sinceImageTransitioned" and count < ARCHIVE_MINIMUM_DAYS:
        raise InputError(
            f"{where}.countNumber", count, f"at least {ARCHIVE_MINIMUM_DAYS} days: ECR keeps archived images that long"
        )
    return rule


def _action(value: object, source: str) -> str:
    """expire, or transition to the archive storage class."""
    accepted = f"{{type: expire}} or {{type: transition, targetStorageClass: {ARCHIVE}}}"
    if not isinstance(value, Mapping) or value.get("type") not in ACTIONS:
        raise InputError(source, value, accepted)
    wanted = (
        {"type": "transition", "targetStorageClass": ARCHIVE} if value["type"] == "transition" else {"type": "expire"}
    )
    if dict(value) != wanted:
        raise InputError(source, value, accepted)
    return str(value["type"])


def _check_order(rules: list[dict[str, Any]], source: str) -> None:
    priorities = [rule["rulePriority"] for rule in rules]
    for priority in priorities:
        if priorities.count(priority) > 1:
            raise InputError(f"{source} (priority {priority})", priorities, "rules with unique priorities")
    for rule in rules:
        if rule["selection"]["tagStatus"] == "any" and rule["rulePriority"] != max(priorities):
            raise InputError(
                f"{source} (priority {rule['rulePriority']})",
                rule["selection"],
                f"a tagStatus any rule with the highest priority number ({max(priorities)} is higher): put it last",
            )


def _positive(options: Mapping[str, Any], key: str, source: str) -> int:
    value = options.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{source}.{key}", value, "a positive integer")
    return value


def _mapping(value: object, source: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(source, value, "a mapping")
    return dict(value)


def _only(options: Mapping[str, Any], allowed: set[str], source: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InputError(source, unknown[0], f"one of {', '.join(sorted(allowed))}")
