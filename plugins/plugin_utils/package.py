"""What the collection's plugins say when the Python running ansible-playbook has no ecrkit package."""

from __future__ import annotations

import json
import os
import re
import sys


def collection_version() -> str:
    """This collection's version: from its MANIFEST.json once installed, from galaxy.yml in a checkout."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    try:
        with open(os.path.join(root, "MANIFEST.json")) as manifest:
            return str(json.load(manifest)["collection_info"]["version"])
    except (OSError, ValueError, KeyError):
        pass
    try:
        with open(os.path.join(root, "galaxy.yml")) as galaxy:
            found = re.search(r"^version:\s*[\"']?([^\s\"']+)", galaxy.read(), re.MULTILINE)
        return found.group(1) if found else ""
    except OSError:
        return ""


def missing_package(plugins: str, missing: ImportError) -> str:
    """What to install, naming the Python that could not import it and the version that fits."""
    version = collection_version()
    return (
        f"{plugins} need the Python package ecrkit in the Python that runs ansible-playbook "
        f"({sys.executable}), which cannot import it ({missing}): "
        f"pip install 'ecrkit{'==' + version if version else ''}' into that Python"
        f"{' (the version of this collection)' if version else ''}"
    )
