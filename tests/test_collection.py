"""The collection as it ships: its artifact's files, its docs as ansible-doc reads them from the
installed artifact, ansible-test sanity on that installed copy, and the execution environment.

Needs no hosts and no stand-in. The sanity tests run in virtualenvs that ansible-test makes
under .cache/ansible-test (HOME for it) and fills from PyPI the first time (about a minute);
after that the whole module takes about half a minute.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# ansible-test's own home: its virtualenvs and downloads stay out of the user's ~/.ansible.
TEST_HOME = ROOT / ".cache" / "ansible-test"
# The offline sanity tests. pslint and shellcheck have nothing to check (no PowerShell, no shell
# scripts) and need tools this project does not install.
SANITY = [
    "action-plugin-docs", "changelog", "compile", "empty-init", "ignores", "line-endings", "no-assert",
    "no-get-exception", "no-illegal-filenames", "no-smart-quotes", "pep8", "pylint", "replace-urlopen",
    "runtime-metadata", "shebang", "symlinks", "use-argspec-type-path", "use-compat-six", "validate-modules",
    "yamllint",
]  # fmt: skip
# These load the filter plugin in ansible-test's virtualenvs, which have no ecrkit package: they pass because
# plugins/filter/ecrkit.py reports a missing ecrkit when a filter is called, not when it is loaded.
SANITY_LOADING_FILTERS = ["ansible-doc", "import"]
BOOTSTRAP_MISSING = re.compile(r"The bootstrap script can be manually downloaded and saved to: (\S+)")
# What ansible-test's pip bootstrap script (get-pip.py) does, from the pip bundled with Python, for
# machines that reach PyPI but not ansible-test's download site.
BOOTSTRAP_STAND_IN = '''"""Stand-in for get-pip.py (tests/test_collection.py): ensurepip, then pip installs the rest."""
import subprocess
import sys

OWN = {"--no-setuptools": "setuptools", "--no-wheel": "wheel"}
pip = [sys.executable, "-m", "pip"]
rc = subprocess.call([sys.executable, "-m", "ensurepip", "--default-pip"])
if rc == 0:
    rc = subprocess.call([*pip, "install", *(arg for arg in sys.argv[1:] if arg not in OWN)])
unwanted = [OWN[arg] for arg in sys.argv[1:] if arg in OWN]
if rc == 0 and unwanted:
    rc = subprocess.call([*pip, "uninstall", "--yes", "--quiet", *unwanted])
sys.exit(rc)
'''


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
    )
    output = f"{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    assert done.returncode == 0, f"{' '.join(argv)}: exit {done.returncode}\n{output}"
    return done.stdout


def filter_names() -> list[str]:
    """The filters the plugin returns (plugins/filter/ecrkit.py), each of which must be documented."""
    spec = importlib.util.spec_from_file_location("ecrkit_filter_plugin", ROOT / "plugins" / "filter" / "ecrkit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sorted(module.FilterModule().filters())


def module_names() -> list[str]:
    return sorted(path.stem for path in (ROOT / "plugins" / "modules").glob("*.py") if path.name != "__init__.py")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("artifact")
    run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(output)], cwd=ROOT)
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    path = output / f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    assert path.is_file(), sorted(output.iterdir())
    return path


@pytest.fixture(scope="module")
def collections(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collections path with only the installed artifact (not the checkout's collections/ link)."""
    path = tmp_path_factory.mktemp("collections")
    # Run outside the checkout, whose ansible.cfg would find the collection already "installed" there.
    run([str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "--force", "-p", str(path), str(artifact)],
        cwd=path)  # fmt: skip
    assert (path / "ansible_collections" / "ecrkit" / "ecr" / "MANIFEST.json").is_file()
    return path


@pytest.fixture(scope="module")
def installed(collections: Path) -> Path:
    return collections / "ansible_collections" / "ecrkit" / "ecr"


def doc_env(collections: Path) -> dict[str, str]:
    # The filters import the ecrkit package: the checkout's, as the venv's editable install would give.
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_CONFIG"}  # run outside the checkout
    return {**env, "ANSIBLE_COLLECTIONS_PATH": str(collections), "PYTHONPATH": str(ROOT), "ANSIBLE_NOCOLOR": "1"}


def test_the_artifact_holds_the_collection_and_nothing_else(artifact: Path) -> None:
    with tarfile.open(artifact) as tar:
        names = set(tar.getnames())
    wanted = {"MANIFEST.json", "FILES.json", "README.md", "CHANGELOG.md", "meta/runtime.yml", "site.yml"}
    wanted |= {f"plugins/modules/{name}.py" for name in module_names()}
    wanted |= {"plugins/filter/ecrkit.py"} | {f"plugins/filter/{name}.yml" for name in filter_names()}
    wanted |= {f"roles/{role.name}/tasks/main.yml" for role in (ROOT / "roles").iterdir() if role.is_dir()}
    wanted |= {f"roles/{role.name}/meta/argument_specs.yml" for role in (ROOT / "roles").iterdir() if role.is_dir()}
    wanted |= {f"playbooks/{playbook.name}" for playbook in (ROOT / "playbooks").glob("*.yml")}
    wanted |= {"inventory/example/hosts.yml", "scripts/README.md", "scripts/ecrkit_probe.py"}
    wanted |= {f"roles/{role.name}/README.md" for role in (ROOT / "roles").iterdir() if role.is_dir()}
    wanted |= {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}  # the README's links lead there
    wanted |= {"tests/sanity/ignore-2.19.txt", "examples/gitlab-ci.yml"}  # docs/validation.md links it
    wanted |= {"examples/codebuild/buildspec.yml", "examples/codebuild/schedule.yml"}  # docs/mirroring.md links them
    assert sorted(wanted - names) == []
    unwanted = ("ecrkit/", "tests/test_", "tests/data/", "tests/conftest.py", ".venv/", ".cache/", "molecule/",
                "collections/", "bench/", "tools/", "inventory/local/", "testbed/")  # fmt: skip
    assert sorted(name for name in names if name.startswith(unwanted)) == []
    checkout_only = {"ansible.cfg", "pyproject.toml", "requirements.txt", "Makefile", "ecrkit", "tests/__init__.py",
                     "Containerfile", ".containerignore"}  # fmt: skip
    assert sorted(names & checkout_only) == []
    assert sorted(name for name in names if "__pycache__" in name or name.endswith((".pyc", ".whl", ".tar.gz"))) == []


def test_the_probe_ships_as_a_link_to_the_module(artifact: Path) -> None:
    with tarfile.open(artifact) as tar:
        link = tar.getmember("scripts/ecrkit_probe.py")
    assert link.issym() and link.linkname == "../plugins/modules/probe.py"


@pytest.mark.parametrize("plugin_type", ["module", "filter"])
def test_ansible_doc_reads_every_plugin_from_the_installed_artifact(
    plugin_type: str, collections: Path, installed: Path
) -> None:
    names = [f"ecrkit.ecr.{name}" for name in (module_names() if plugin_type == "module" else filter_names())]
    output = run([str(BIN / "ansible-doc"), "--json", "-t", plugin_type, *names], cwd=collections,
                 env=doc_env(collections))  # fmt: skip
    docs: dict[str, Any] = json.loads(output)
    assert sorted(docs) == names
    for name, entry in docs.items():
        doc = entry["doc"]
        assert Path(doc["filename"]).is_relative_to(installed), (name, doc["filename"])
        assert doc["short_description"] and doc["description"], name
        assert doc.get("options"), name
        assert entry.get("examples", "").strip(), name
        assert entry.get("return"), name
        if plugin_type == "module":
            assert doc["attributes"]["check_mode"]["support"] == "full", name


def test_ansible_doc_lists_no_undocumented_filter(collections: Path) -> None:
    output = run([str(BIN / "ansible-doc"), "--list", "--json", "-t", "filter", "ecrkit.ecr"], cwd=collections,
                 env=doc_env(collections))  # fmt: skip
    listed: dict[str, str] = json.loads(output)
    assert sorted(listed) == [f"ecrkit.ecr.{name}" for name in filter_names()]
    assert sorted(name for name, summary in listed.items() if summary == "UNDOCUMENTED") == []


def ansible_test_sanity(installed: Path, tests: list[str]) -> tuple[int, str]:
    """`ansible-test sanity` on the installed copy, once more after providing pip's bootstrap if it was missing.
    Returns its exit status and its errors."""
    env = {**os.environ, "HOME": str(TEST_HOME)}
    argv = [str(BIN / "ansible-test"), "sanity", "--python", f"{sys.version_info.major}.{sys.version_info.minor}"]
    argv += [option for test in tests for option in ("--test", test)]
    # Provided before the first run, so that ansible-test does not try its download site at all.
    requirements = Path(BIN.parent / "lib").glob("python3*/site-packages/ansible_test/_internal/python_requirements.py")
    for source in requirements:
        if pinned := re.search(r"pip='([0-9.]+)'", source.read_text()):
            provide_pip_bootstrap(TEST_HOME / ".ansible/test/cache" / f"get_pip_{pinned[1].replace('.', '_')}.py")
    for _attempt in range(2):
        done = subprocess.run(argv, cwd=installed, env=env, capture_output=True, text=True, timeout=900, check=False,
                              stdin=subprocess.DEVNULL)  # fmt: skip
        missing = BOOTSTRAP_MISSING.search(done.stdout + done.stderr)
        if done.returncode == 0 or missing is None:
            break
        provide_pip_bootstrap(Path(missing.group(1)))
    output = done.stdout + done.stderr
    errors = [line for line in output.splitlines() if "ERROR" in line or "FATAL" in line or "No module named" in line]
    return done.returncode, "\n".join(errors) or output[-6000:]


def provide_pip_bootstrap(path: Path) -> None:
    """The stand-in above instead of ansible-test's get-pip.py: its site is beyond what these machines may reach."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(BOOTSTRAP_STAND_IN)


def test_ansible_test_sanity_passes_on_the_installed_artifact(installed: Path) -> None:
    status, errors = ansible_test_sanity(installed, SANITY)
    assert status == 0, errors


def test_ansible_test_sanity_loading_the_filters_passes(installed: Path) -> None:
    status, errors = ansible_test_sanity(installed, SANITY_LOADING_FILTERS)
    assert status == 0, errors


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ansible-builder create's output, with the ecrkit wheel built from the checkout as the EE file says."""
    work = tmp_path_factory.mktemp("ee")
    shutil.copy(ROOT / "execution-environment.yml", work)
    source = work / "source"  # a copy, so that the build leaves no build/ or egg-info in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "ecrkit", source / "ecrkit", ignore=shutil.ignore_patterns("__pycache__"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir",
         str(work / "dist"), str(source)], cwd=work)  # fmt: skip
    run([str(BIN / "ansible-builder"), "create", "--file", "execution-environment.yml", "--context", "context"],
        cwd=work)  # fmt: skip
    return work / "context"


def test_the_execution_environment_installs_what_the_collection_needs(context: Path) -> None:
    build = context / "_build"
    containerfile = (context / "Containerfile").read_text()
    ee = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert ee["version"] == 3
    assert f'ARG EE_BASE_IMAGE="{ee["images"]["base_image"]["name"]}"' in containerfile
    # galaxy.yml's dependencies, with the same version ranges
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    requirements = yaml.safe_load((build / "requirements.yml").read_text())
    assert {item["name"]: item["version"] for item in requirements["collections"]} == galaxy["dependencies"]
    # the ecrkit wheel this checkout makes is the one the EE installs, and it is in the context
    wheels = [path.name for path in (build / "wheels").glob("*.whl")]
    assert len(wheels) == 1 and wheels[0].startswith("ecrkit-"), wheels
    pip = (build / "requirements.txt").read_text().splitlines()
    assert f"ecrkit @ file:///build/wheels/{wheels[0]}" in pip
    assert any(line.startswith("boto3") for line in pip)
    assert "COPY _build/wheels/ /build/wheels/" in containerfile.split("FROM base AS builder")[1].split("FROM")[0]
    # ansible-builder's own introspection reads the requirements as the image build will
    empty = context.parent / "no-collections"
    (empty / "ansible_collections").mkdir(parents=True)
    introspect = [sys.executable, str(build / "scripts" / "introspect.py"), "introspect"]
    run([*introspect, "--user-pip", str(build / "requirements.txt"), "--user-bindep", str(build / "bindep.txt"),
         str(empty)], cwd=context)  # fmt: skip
