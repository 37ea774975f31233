"""Merge the credential helper into a Docker `config.json`, keeping every foreign key."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, Literal

from ecrkit.constants import HELPER_NAME
from ecrkit.errors import FileFormatError
from ecrkit.settings import CredentialRule

State = Literal["present", "absent"]
SECRET_KEYS = ("auth", "password", "identitytoken", "registrytoken")
REDACTED = "<redacted>"


def merge(config: Mapping[str, Any], rule: CredentialRule) -> dict[str, Any]:
    """Add the rule's keys; foreign keys, helpers and `auths` are kept as they are."""
    merged = copy.deepcopy(dict(config))
    for key, value in rule.entries().items():
        if isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    return merged


def remove(config: Mapping[str, Any], rule: CredentialRule) -> dict[str, Any]:
    """Remove only the entries the same rule would add, and only while they still name ecr-login."""
    cleaned = copy.deepcopy(dict(config))
    if rule.creds_store and cleaned.get("credsStore") == HELPER_NAME:
        del cleaned["credsStore"]
    helpers = cleaned.get("credHelpers")
    if isinstance(helpers, dict):
        for host in rule.registries:
            if helpers.get(host) == HELPER_NAME:
                del helpers[host]
        if not helpers:
            del cleaned["credHelpers"]
    return cleaned


def parse(text: str, path: str) -> dict[str, Any]:
    """Parse config.json text; an empty file counts as `{}`, as Docker itself treats it."""
    if not text.strip():
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(path, f"not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise FileFormatError(path, f"the top level is a JSON {type(config).__name__}, not an object")
    for key in ("credHelpers", "auths"):
        if key in config and not isinstance(config[key], dict):
            raise FileFormatError(path, f'"{key}" is a JSON {type(config[key]).__name__}, not an object')
    return config


def dumps(config: Mapping[str, Any]) -> str:
    """Docker's own layout (tab indent, key order kept), so docker's rewrites do not churn it."""
    return json.dumps(config, indent="\t") + "\n"


def dumps_compact(config: Mapping[str, Any]) -> str:
    """One line, for a DOCKER_AUTH_CONFIG value or a shell variable."""
    return json.dumps(config, separators=(",", ":"))


def render(
    existing: str | None,
    rule: CredentialRule,
    *,
    path: str,
    state: State = "present",
    replace_invalid: bool = False,
) -> str:
    """The new content of `path`. Unchanged meaning returns the existing text byte for byte."""
    try:
        current = parse(existing, path) if existing is not None else {}
    except FileFormatError:
        if not replace_invalid:
            raise
        current = {}
        existing = None
    updated = merge(current, rule) if state == "present" else remove(current, rule)
    if existing is not None and updated == current:
        return existing
    return dumps(updated)


def has_secrets(config: Mapping[str, Any]) -> bool:
    """True when `auths` holds stored credentials, which must never reach a log or a diff."""
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return False
    return any(isinstance(entry, dict) and any(entry.get(k) for k in SECRET_KEYS) for entry in auths.values())


def redact(text: str | None) -> str:
    """The text with stored credentials replaced, for diffs; unparsable text is hidden whole."""
    if not text:
        return ""
    try:
        config = json.loads(text)
    except json.JSONDecodeError:
        return REDACTED + "\n"
    if not isinstance(config, dict):
        return REDACTED + "\n"
    auths = config.get("auths")
    if isinstance(auths, dict):
        for entry in auths.values():
            if isinstance(entry, dict):
                for key in SECRET_KEYS:
                    if key in entry:
                        entry[key] = REDACTED
    return dumps(config)
