"""The issue's acceptance test: ecrkit as a user installs it, used from a project of their own.

The checkout only builds the artifacts: the wheel (pip wheel) and the collection (ansible-galaxy
collection build). A fresh virtualenv gets ansible and, later, the wheel; the collection is installed
with ansible-galaxy into a directory of its own; a project directory outside the checkout has its own
ansible.cfg, inventory and playbook, which calls the roles by fully qualified name. Every command runs
there, with that virtualenv on the PATH and nothing of the dev environment (tests/test_distribution.py's
outside_env).

Before the wheel is installed, a role stops with what to pip install. After: the README's playbook and
group variables converge a systemd container, whose user (not root) then pulls from the stand-in ECR
through the helper with credHelpers, and the installed `ecrkit validate` passes the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import ecrkit
from testbed.hosts import Host, give_stand_in_role
from testbed.standin import REGISTRY_HOST, StandIn
from tests.conftest import readme_block, stand_in_host
from tests.test_distribution import ROOT, build_wheel, make_venv, outside_env, pip_install, run


@dataclass
class Controller:
    """A user's controller: a virtualenv, the collection installed beside it, and a project directory."""

    venv: Path
    project: Path
    wheel: Path

    def env(self) -> dict[str, str]:
        # podman needs this machine's settings (runc, ulimits) as it does for any user here.
        more = {"CONTAINERS_CONF": os.environ["CONTAINERS_CONF"]} if "CONTAINERS_CONF" in os.environ else {}
        return outside_env(self.venv, self.project.parent / "home", **more)

    def run(self, command: str, *args: str | Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
        return run([self.venv / "bin" / command, *args], cwd=self.project, env=self.env(), timeout=timeout)

    def has_ecrkit(self) -> bool:
        return self.run("python", "-c", "import ecrkit").returncode == 0


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Controller:
    """Artifacts built from the checkout; a virtualenv with ansible only (the wheel comes later)."""
    work = tmp_path_factory.mktemp("outside")
    (work / "dist").mkdir()
    wheel = build_wheel(work / "dist")
    built = run([Path(sys.executable).with_name("ansible-galaxy"), "collection", "build", "--output-path",
                 work / "dist", ROOT], cwd=work)  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (collection,) = (work / "dist").glob("ecrkit-ecr-*.tar.gz")

    venv = make_venv(work / "venv")
    pip_install(venv, "ansible")
    project = work / "project"
    project.mkdir()
    (work / "home").mkdir()
    user = Controller(venv, project, wheel)
    # Galaxy is out of reach here: amazon.aws and community.aws come with the ansible package.
    installed = user.run("ansible-galaxy", "collection", "install", "-p", work / "collections", collection)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    (project / "ansible.cfg").write_text(
        f"[defaults]\ninventory = hosts.yml\ncollections_path = {work / 'collections'}\n"
        "retry_files_enabled = false\ninterpreter_python = auto_silent\n"
    )
    return user


def test_a_role_without_the_package_on_the_controller_says_what_to_install(controller: Controller) -> None:
    if controller.has_ecrkit():  # the other test ran first: back to a controller without the package
        done = run([sys.executable, "-m", "pip", "--python", controller.venv / "bin/python", "uninstall", "-y",
                    "ecrkit"], env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})  # fmt: skip
        assert done.returncode == 0, done.stderr
    (controller.project / "local.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
    )
    (controller.project / "one-role.yml").write_text(
        "- name: One role of the collection\n  hosts: all\n  gather_facts: false\n"
        "  roles:\n    - ecrkit.ecr.docker_auth_config\n"
    )
    done = controller.run("ansible-playbook", "--check", "-i", "local.yml", "one-role.yml")
    assert done.returncode == 2, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert f"pip install 'ecrkit=={ecrkit.__version__}'" in said, said[-3000:]  # from an index, or
    assert f"`make dist` builds in an ecrkit checkout: {controller.venv / 'bin' / 'python'} -m pip install " \
        f"dist/ecrkit-{ecrkit.__version__}-py3-none-any.whl" in said  # fmt: skip
    assert str(controller.venv / "bin" / "python") in said  # which Python lacks it
    assert "No module named 'ecrkit'" in said
    assert "No filter named" not in said


@pytest.fixture(scope="module")
def host(stand_in: StandIn) -> Iterator[Host]:
    with stand_in_host("ecrkit-outside", stand_in) as started:
        # What EC2 gives a host, emulated: the stand-in's keys in every login's environment (validate's live get).
        give_stand_in_role(started, stand_in)
        yield started


@pytest.mark.hosts
@pytest.mark.standin
def test_the_installed_wheel_and_collection_provision_a_host_that_pulls_and_validates(
    controller: Controller, host: Host, image: str, stand_in: StandIn
) -> None:
    pip_install(controller.venv, controller.wheel, wheel=controller.wheel)
    assert controller.has_ecrkit()
    project = controller.project
    # The README's group variables: the person at the keyboard, and the registries by name (credHelpers).
    group_vars = readme_block("<!-- outside-group-vars -->")
    wanted = yaml.safe_load(group_vars)
    (user,) = wanted["docker_auth_config_users"]
    assert user != "root" and wanted["docker_auth_config_registries"] == [REGISTRY_HOST]
    inventory = {
        "workstations": {
            "hosts": {host.name: {"ansible_connection": "containers.podman.podman"}},
            "vars": {
                "ecr_credential_helper_install_method": "controller_file",
                "ecr_credential_helper_src": "/usr/bin/docker-credential-ecr-login",
            },
        }
    }
    (project / "hosts.yml").write_text(json.dumps({"all": {"children": inventory}}, indent=2))
    (project / "group_vars").mkdir()
    (project / "group_vars" / "workstations.yml").write_text(group_vars)
    (project / "site.yml").write_text(readme_block("<!-- outside-playbook -->"))  # the README's playbook
    for path in project.rglob("*"):  # the project stands on its own
        assert path.is_dir() or str(ROOT) not in path.read_text(), path
    # The person's login on the workstation (the roles require that each named user exists).
    assert host.run(f"useradd -m {user}").returncode == 0

    assert user_pull(host, user, image, stand_in) != 0, "the pull worked before the roles ran"
    done = controller.run("ansible-playbook", "site.yml")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    # credHelpers for the named registry and no credsStore: docker login to other registries keeps working.
    assert json.loads(host.read(f"/home/{user}/.docker/config.json")) == {"credHelpers": {REGISTRY_HOST: "ecr-login"}}
    assert not host.exists("/root/.docker/config.json")

    before = stand_in.token_requests()
    assert user_pull(host, user, image, stand_in) == 0
    assert stand_in.token_requests() == before + 1, "the pull did not go through the helper"

    done = controller.run("ecrkit", "validate", "-i", "hosts.yml", "--json")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["passed"] and [h["host"] for h in report["hosts"]] == [host.name]
    gets = [(f["subject"], f["severity"]) for f in report["hosts"][0]["findings"] if f["check"] == "live get"]
    assert gets == [(f"user {user}", "ok")]


def user_pull(host: Host, user: str, image: str, stand_in: StandIn) -> int:
    """`docker pull` with `user`'s ~/.docker/config.json (the daemon's socket here is root's alone; `ecrkit
    validate` runs the helper as the user), with the cache directory the roles make."""
    env = stand_in.host_env() | {"AWS_ECR_CACHE_DIR": "/var/lib/ecr-login"}
    return host.run(f"docker --config /home/{user}/.docker pull {image} && docker rmi {image}", env).returncode
