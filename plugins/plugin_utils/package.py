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
    """What to install, naming the Python that could not import it, the version that fits, and
    both ways to get it: from a package index, or the wheel `make dist` builds in a checkout."""
    version = collection_version()
    python = sys.executable
    requirement, wheel = (
        (f"ecrkit=={version}", f"ecrkit-{version}-py3-none-any.whl") if version else ("ecrkit", "ecrkit-*.whl")
    )
    return (
        f"{plugins} need the Python package ecrkit{f' {version}, the version of this collection,' if version else ''} "
        f"in the Python that runs ansible-playbook ({python}), which cannot import it ({missing}). Install it "
        f"into that Python from an index that has it: {python} -m pip install '{requirement}'; "
        f"or from the wheel that `make dist` builds in an ecrkit checkout: {python} -m pip install dist/{wheel}"
    )
