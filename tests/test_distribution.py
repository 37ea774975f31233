"""The Python distribution: one version, declared dependencies, and a wheel that holds what its commands need.

The wheel is built from a copy of the checkout and installed into a clean virtualenv (no Ansible, no
stand-in); every command then runs from a directory outside the checkout, so nothing can be read from it.
The helpers here (build_wheel, wheelhouse, make_venv, outside_env) serve tests/test_outside_checkout.py too.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import ecrkit

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "requirements.txt"
# Wheels of the dependencies at requirements.txt's pins, downloaded once (from PyPI, through pip's cache).
WHEELHOUSE = ROOT / ".cache" / "wheelhouse"
# What stays in the checkout: the test bed (testbed/: make run's hosts, the stand-ins), the tests, the
# benchmarks and the tools. The wheel holds none of it, and no module of ecrkit imports it.
CHECKOUT_ONLY = ("testbed", "tests", "bench", "tools")
NOT_COPIED = (".git", ".venv", ".cache", "build", "dist", "*.egg-info", "__pycache__", "*_cache", ".hypothesis")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(argv: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


def pip(*args: str | Path) -> None:
    """The dev venv's pip (`--python` points it at another environment); its output only on failure."""
    # Without PYTHONPATH: a checkout on it would be taken for an installed ecrkit by the target environment.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def build_wheel(work: Path) -> Path:
    """The wheel, built from a copy of the checkout: a fresh build (no stale build/), nothing left behind."""
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_COPIED, "collections"))
    pip("wheel", "-q", "--no-deps", "-w", work, source)
    shutil.rmtree(source)
    (wheel,) = work.glob("ecrkit-*.whl")
    return wheel


def requirements(wheel: Path, extra: str = "") -> list[str]:
    """The wheel's Requires-Dist: the runtime ones, or those an extra adds."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    found = []
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist: "):
            requirement, _, marker = line.removeprefix("Requires-Dist: ").partition(";")
            wanted = f'extra == "{extra}"' in marker if extra else not marker.strip()
            if wanted:
                found.append(requirement.strip())
    return found


def wheelhouse(*wanted: str) -> Path:
    """A directory of wheels for `wanted` and their dependencies at requirements.txt's pins, so that
    installs need no index. Downloaded once per set of pins (never ecrkit itself: a stale wheel of the
    same version would be taken for the new one)."""
    key = hashlib.sha256("\n".join([PINS.read_text(), *sorted(wanted)]).encode()).hexdigest()[:16]
    stamp = WHEELHOUSE / f".downloaded-{key}"
    if not stamp.exists():
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        pip("download", "-q", "-d", WHEELHOUSE, "-c", PINS, *wanted)
        stamp.touch()
    return WHEELHOUSE


def pip_install(venv: Path, *wanted: str | Path, wheel: Path | None = None) -> None:
    """Install into `venv` from the wheelhouse only, at the pins (the ecrkit wheel's dependencies too)."""
    names = [str(w) for w in wanted if not isinstance(w, Path)]
    dependencies = requirements(wheel) if wheel else []
    pip("--python", venv / "bin" / "python", "install", "-q", "--no-index", "--find-links",
        wheelhouse(*names, *dependencies), "-c", PINS, *wanted)  # fmt: skip


def make_venv(path: Path) -> Path:
    """An empty virtualenv (no pip: the dev venv's pip installs into it)."""
    done = run([sys.executable, "-m", "venv", "--without-pip", path])
    assert done.returncode == 0, done.stderr
    return path


def outside_env(venv: Path, home: Path, **more: str) -> dict[str, str]:
    """A user's environment with `venv` activated: no PYTHONPATH, no ANSIBLE_*, nothing of the dev venv."""
    env = {"PATH": f"{venv / 'bin'}:{SYSTEM_PATH}", "HOME": str(home), "LANG": "C.UTF-8", "VIRTUAL_ENV": str(venv)}
    return env | more


# -- one version ---------------------------------------------------------------------------------------


def test_the_package_and_the_collection_have_one_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "the version lives in ecrkit/__init__.py only"
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ecrkit.__version__"}
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert str(galaxy["version"]) == ecrkit.__version__, (
        f"galaxy.yml says {galaxy['version']}, ecrkit/__init__.py {ecrkit.__version__}: make them the same"
    )
    assert re.fullmatch(r"\d+\.\d+\.\d+", ecrkit.__version__)  # what Galaxy accepts (semantic versioning)


def test_ecrkit_version_prints_it() -> None:
    done = run([sys.executable, "-m", "ecrkit", "--version"], cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == f"ecrkit {ecrkit.__version__}"


# -- what the package carries instead of reading the checkout ------------------------------------------


def _optional(tree: ast.AST) -> set[ast.AST]:
    """Nodes in the body of a `try` that handles ImportError: imports the module can do without."""
    guarded: set[ast.AST] = set()
    for node in ast.walk(tree):
        caught = (ast.unparse(h.type) for h in getattr(node, "handlers", ()) if h.type is not None)
        if isinstance(node, ast.Try) and any("ImportError" in text for text in caught):
            guarded |= {inner for statement in node.body for inner in ast.walk(statement)}
    return guarded


def _imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports a module needs (those inside functions too)."""
    names = set()
    tree = ast.parse(path.read_text())
    optional = _optional(tree)
    for node in ast.walk(tree):
        if node in optional:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(requirements: list[str]) -> set[str]:
    return {_normal(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements}


def test_every_import_is_a_declared_dependency() -> None:
    """ecrkit's modules import the runtime dependencies only; the test bed's, the development ones too."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _declared(project["dependencies"]) | {"ecrkit"}
    development = runtime | _declared(project["optional-dependencies"]["dev"]) | {"testbed"}
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for path in sorted([*(ROOT / "ecrkit").rglob("*.py"), *(ROOT / "testbed").rglob("*.py")]):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        allowed = runtime if module.startswith("ecrkit") else development
        for name in sorted(_imports(path)):
            if not {_normal(d) for d in distributions.get(name, [name])} & allowed:
                missing.append(f"{module} imports {name} ({', '.join(distributions.get(name, ['?']))})")
    assert not missing, "not declared in pyproject.toml: " + "; ".join(missing)


def _imported(path: Path, package: str) -> set[str]:
    """Every module a file imports, wherever the import is (in a function, a try, under TYPE_CHECKING),
    relative imports resolved against `package` (the file's own)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(filter(None, [base, node.module or ""]))
            found |= {module} if node.module else {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_no_runtime_module_imports_the_test_bed() -> None:
    """The test bed (and the tests, benchmarks and tools) stays out of the runtime package: no module
    of ecrkit imports it, so an install without the checkout lacks nothing ecrkit needs."""
    wrong = []
    for path in sorted((ROOT / "ecrkit").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        wrong += [f"{module} imports {name}" for name in sorted(_imported(path, package))
                  if name.split(".")[0] in CHECKOUT_ONLY]  # fmt: skip
    assert not wrong, "; ".join(wrong)
    assert not (ROOT / "ecrkit" / "testbed.py").exists() and not list((ROOT / "ecrkit").glob("standin*.py"))


def test_the_probes_types_are_one_module_that_both_sides_import() -> None:
    """The facts' types live in ecrkit/probe_facts.py: the package's modules import them from there, the
    probe under TYPE_CHECKING only (hosts run it alone). ecrkit/probe.py, a link to the module, is the file
    validate sends to hosts, never imported by the package: no dependency that an import does not show."""
    users = []
    readers = [*(ROOT / "ecrkit").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]  # the action, the filters
    for path in sorted(p for p in readers if p.parent.name != "modules"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        imported = _imported(path, package)
        if "ecrkit.probe" in imported or any(name.startswith("ecrkit.probe.") for name in imported):
            users.append(module)
        if "ecrkit.probe_facts" in imported:
            users.append(f"{module} (probe_facts)")
    assert not [user for user in users if not user.endswith("(probe_facts)")], users
    assert len(users) >= 7, users  # checks, converge, hoststate, plans, validate, the action, the filters
    probe = ast.parse((ROOT / "plugins" / "modules" / "probe.py").read_text())
    typed = [node.name for node in ast.walk(probe) if isinstance(node, ast.ClassDef)]
    assert typed == [], f"the probe defines {typed}: the facts' types belong in ecrkit/probe_facts.py"
    guarded = [
        node for node in probe.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        and any(isinstance(inner, ast.ImportFrom) and inner.module == "ecrkit.probe_facts" for inner in node.body)
    ]  # fmt: skip
    unguarded = [n for n in probe.body if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("ecrkit")]
    assert len(guarded) == 1 and not unguarded
    assert (ROOT / "ecrkit" / "probe.py").resolve() == (ROOT / "plugins" / "modules" / "probe.py").resolve()


# -- the wheel, installed with nothing else --------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_the_package_and_the_probe_as_a_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        sources = {str(p.relative_to(ROOT)) for p in (ROOT / "ecrkit").rglob("*") if p.suffix in (".py", ".json")}
        assert sources <= names, sorted(sources - names)
        probe = archive.getinfo("ecrkit/probe.py")
        assert not stat.S_ISLNK(probe.external_attr >> 16), "the probe is a symlink in the wheel"
        assert archive.read(probe) == (ROOT / "plugins/modules/probe.py").read_bytes()
        (metadata,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        assert f"\nVersion: {ecrkit.__version__}\n" in archive.read(metadata).decode()
    # The test bed stays in the checkout: no file of it, and no extra for its dependencies.
    test_bed = sorted(n for n in names if n.split("/")[0] in CHECKOUT_ONLY or re.match(r"ecrkit/(testbed|standin)", n))
    assert not test_bed, test_bed
    assert {n.split("/")[0] for n in names} == {"ecrkit", f"ecrkit-{ecrkit.__version__}.dist-info"}
    assert not any(r.startswith(("moto", "werkzeug", "bcrypt")) for r in requirements(wheel))
    assert not requirements(wheel, "standin")
    # validate reaches hosts through Ansible: ansible-core and ansible-runner are the runtime's.
    assert {"ansible-core", "ansible-runner"} <= {
        re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0] for r in requirements(wheel)
    }


@pytest.fixture(scope="module")
def runtime(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A virtualenv with the wheel and its runtime dependencies only, and a working directory outside the checkout."""
    work = tmp_path_factory.mktemp("runtime")
    venv = make_venv(work / "venv")
    pip_install(venv, wheel, wheel=wheel)
    (work / "home").mkdir()
    yield venv, work


def ecrkit_in(venv: Path, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([venv / "bin" / "ecrkit", *args], cwd=work, env=outside_env(venv, work / "home"))


def test_a_clean_install_imports_every_runtime_module_without_the_stand_in(runtime: tuple[Path, Path]) -> None:
    venv, work = runtime
    script = """
import importlib, json, pkgutil, sys
import ecrkit
names = [m.name for m in pkgutil.walk_packages(ecrkit.__path__, "ecrkit.") if m.name != "ecrkit.__main__"]
for name in names:
    importlib.import_module(name)
print(json.dumps({"file": ecrkit.__file__, "modules": names,
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("moto", "werkzeug"))}))
"""
    done = run([venv / "bin" / "python", "-c", script], cwd=work, env=outside_env(venv, work / "home"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["file"].startswith(str(venv)), report["file"]
    assert {"ecrkit.cli", "ecrkit.validate", "ecrkit.mirror", "ecrkit.renderers.userdata"} <= set(report["modules"])
    assert report["loaded"] == []
    for absent in ("moto", "werkzeug"):
        assert run([venv / "bin" / "python", "-c", f"import {absent}"], cwd=work).returncode != 0, absent


def test_a_clean_install_runs_the_commands(runtime: tuple[Path, Path]) -> None:
    venv, work = runtime
    assert ecrkit_in(venv, work, "--help").returncode == 0
    done = ecrkit_in(venv, work, "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"ecrkit {ecrkit.__version__}"
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    done = ecrkit_in(venv, work, "render", "docker-config", "--registry", registry)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"credHelpers": {registry: "ecr-login"}}
    done = ecrkit_in(venv, work, "render", "userdata", "--registry", registry, "--sha256", "0" * 64)
    assert done.returncode == 0 and done.stdout.startswith("#!"), done.stderr
    assert ecrkit_in(venv, work, "mirror", "--help").returncode == 0
    # The probe, shipped in the package, runs on this machine: a report, whatever it finds here.
    done = ecrkit_in(venv, work, "validate", "--json", "--user", "root")
    assert done.returncode in (0, 1), done.stderr
    assert json.loads(done.stdout)["hosts"][0]["findings"], done.stdout


def test_validate_i_reaches_an_inventorys_host_through_the_installed_ansible(runtime: tuple[Path, Path]) -> None:
    """ansible-core and ansible-runner come with the wheel, and so does the probe module: no collection needed."""
    venv, work = runtime
    (work / "hosts.yml").write_text("all:\n  hosts:\n    somewhere.invalid:\n")
    done = ecrkit_in(venv, work, "validate", "-i", "hosts.yml", "--json")
    assert done.returncode == 1, done.stderr
    [host] = json.loads(done.stdout)["hosts"]
    assert host["unreachable"].startswith("unreachable: Could not resolve hostname somewhere.invalid"), host


def test_a_clean_install_has_no_test_bed(runtime: tuple[Path, Path]) -> None:
    """The test bed (make run, the stand-ins) is the checkout's: an install has none of it."""
    venv, work = runtime
    env = outside_env(venv, work / "home")
    for module in ("testbed", "testbed.standin", "ecrkit.testbed", "ecrkit.standin"):
        done = run([venv / "bin" / "python", "-m", module], cwd=work, env=env, timeout=60)
        assert done.returncode == 1 and "No module named" in done.stderr, (module, done.stderr)


def test_make_dist_builds_both_without_the_development_venv(tmp_path: Path) -> None:
    """`make dist` in a checkout that has no .venv, with nothing of it on the PATH: the wheel and the
    collection, built by a venv of its own that holds ansible-core and what it needs only."""
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT, checkout, symlinks=True, ignore=shutil.ignore_patterns(*NOT_COPIED))
    done = run(["make", "--no-print-directory", "dist"], cwd=checkout, env={"PATH": SYSTEM_PATH, "HOME": str(tmp_path)},
               timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    built = sorted(path.name for path in (checkout / "dist").iterdir())
    assert built == [f"ecrkit-{ecrkit.__version__}-py3-none-any.whl", f"ecrkit-ecr-{ecrkit.__version__}.tar.gz"]
    assert not (checkout / ".venv").exists()
    listed = run([checkout / ".cache" / "dist-venv" / "bin" / "python", "-m", "pip", "list", "--format=freeze"])
    installed = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert "ansible-core" in installed and not installed & {"pytest", "molecule", "ansible-lint", "moto", "boto3"}
    assert "Warning" not in done.stderr, done.stderr
