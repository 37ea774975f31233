"""The versions the docs claim are the versions the matrix tests (tools/matrix.py, docs/support.md):
its oldest session is meta/runtime.yml's floor, each session's pins hold its ansible-core and a
Python it supports, and the support table names the releases pinned. Reads files only."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tools import matrix

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = (ROOT / "docs" / "support.md").read_text()


def pinned(session: matrix.Session) -> dict[str, str]:
    pins = {}
    for line in session.lock.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def requires_ansible() -> SpecifierSet:
    return SpecifierSet(yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["requires_ansible"])


def test_the_oldest_session_is_the_floor_meta_runtime_allows() -> None:
    allowed = requires_ansible()
    floor = min(Version(spec.version) for spec in allowed if spec.operator == ">=")
    oldest = min(matrix.SESSIONS.values(), key=lambda session: Version(session.core))
    assert Version(oldest.core) == Version(f"{floor.major}.{floor.minor}"), (oldest.core, str(allowed))


def test_every_session_pins_its_ansible_core_within_what_meta_runtime_allows() -> None:
    allowed = requires_ansible()
    for session in matrix.SESSIONS.values():
        core = pinned(session)["ansible-core"]
        assert core.startswith(f"{session.core}."), (session.lock, core)
        assert Version(core) in allowed, (core, str(allowed))


def test_the_newest_session_needs_the_container_exactly_when_its_core_needs_python_3_12() -> None:
    for session in matrix.SESSIONS.values():
        # ansible-core 2.20 and later need Python 3.12 on the controller; this machine has 3.11.
        needs_312 = Version(session.core) >= Version("2.20")
        assert session.container == needs_312, session
        assert Version(session.python) >= Version("3.12" if needs_312 else "3.11"), session


def test_every_session_has_its_sanity_ignores() -> None:
    """The same ignores as the development venv's ansible-core: a module's entry added to one file and
    not the others fails only the matrix, late."""
    ignores = ROOT / "tests" / "sanity"
    for session in matrix.SESSIONS.values():
        assert (ignores / f"ignore-{session.core}.txt").is_file(), session.core
    entries = {path.name: sorted(path.read_text().splitlines()) for path in ignores.glob("ignore-*.txt")}
    assert len(set(map(tuple, entries.values()))) == 1, entries


def test_the_support_table_names_the_releases_the_matrix_pins() -> None:
    for session in matrix.SESSIONS.values():
        release = pinned(session)["ansible-core"]
        assert release in SUPPORT, f"docs/support.md does not name ansible-core {release} ({session.lock.name})"
    assert requires_ansible() == SpecifierSet(re.search(r'`requires_ansible: "([^"]+)"`', SUPPORT)[1])  # type: ignore[index]
    development = re.search(r"^ansible-core==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert development and development[1] in SUPPORT, "docs/support.md does not name the development pin"


def test_make_test_matrix_runs_in_ci() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "make test" in ci and "make test-matrix" in ci
    assert "python tools/matrix.py" in (ROOT / "Makefile").read_text()
