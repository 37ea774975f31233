"""The ecr_mirror role's units and files come from ecrkit.renderers.mirror_service: inputs are checked
before anything is written, naming the role variable; the package files shipped are all of ecrkit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecrkit.errors import EcrkitError
from ecrkit.renderers import mirror_service
from ecrkit.renderers.mirror_service import Options

ROOT = Path(__file__).resolve().parent.parent
CONFIG = {"target": "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "images": [{"source": "alpine", "tags": ["3"]}]}


def test_the_units_run_the_mirror_on_the_schedule_with_the_targets_region() -> None:
    plan = mirror_service.plan(CONFIG, Options(schedule="Mon *-*-* 02:00", jobs=6), header="# Ansible managed")
    assert plan["service"].startswith("# Ansible managed\n[Unit]")
    assert "ExecStart=/usr/bin/python3 -m ecrkit mirror --config /etc/ecrkit/mirror.yml --jobs 6" in plan["service"]
    assert 'Environment="AWS_REGION=eu-west-1"' in plan["service"]
    assert 'Environment="AWS_ECR_CACHE_DIR=/var/cache/ecrkit-mirror"' in plan["service"]
    assert "User=ecrkit-mirror" in plan["service"]
    assert "StateDirectory=ecrkit-mirror" in plan["service"]
    assert "OnCalendar=Mon *-*-* 02:00" in plan["timer"]
    assert yaml.safe_load(plan["config"]) == CONFIG
    assert plan["service_path"] == "/etc/systemd/system/ecrkit-mirror.service"


def test_every_file_of_the_package_is_shipped_and_no_bytecode() -> None:
    plan = mirror_service.plan(CONFIG, Options(install_dir="/srv/ecrkit"))
    shipped = {item["dest"].removeprefix("/srv/ecrkit/lib/") for item in plan["files"]}
    expected = {str(p.relative_to(ROOT)) for p in (ROOT / "ecrkit").rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}  # fmt: skip
    assert shipped == expected
    assert {"ecrkit/__main__.py", "ecrkit/mirror.py", "ecrkit/registry.py"} <= shipped
    parents = {str(Path(f"/srv/ecrkit/lib/{name}").parent) for name in shipped}
    assert parents <= set(plan["directories"])


@pytest.mark.parametrize(
    ("config", "options", "expected"),
    [
        ({}, Options(), "ecr_mirror_config: (top level): 'target' is a required property"),
        ({**CONFIG, "target": "quay.io"}, Options(), "ecr_mirror_config: target: 'quay.io'"),
        (CONFIG, Options(jobs=0), "ecr_mirror_jobs: 0"),
        (CONFIG, Options(schedule="daily\nExecStart=/bin/evil"), "ecr_mirror_schedule: 'daily\\nExecStart"),
        (CONFIG, Options(unit="mirror.service"), "ecr_mirror_unit: 'mirror.service'"),
        (CONFIG, Options(region="mars-1"), "ecr_mirror_region: 'mars-1'"),
        (CONFIG, Options(install_dir="opt/ecrkit"), "ecr_mirror_install_dir: 'opt/ecrkit'"),
        (CONFIG, Options(environment=(("lower", "x"),)), "ecr_mirror_environment: 'lower'"),
    ],
)
def test_bad_inputs_are_refused_naming_the_variable(config: dict[str, Any], options: Options, expected: str) -> None:
    with pytest.raises(EcrkitError) as error:
        mirror_service.plan(config, options)
    assert expected in str(error.value)


def test_the_mirror_command_loads_only_what_a_mirror_host_has() -> None:
    """The ecr_mirror role gives the host the mirror's libraries only (OS packages): building the
    parser and loading the mirror must not import the renderers' or the validator's."""
    code = (
        "import sys; from ecrkit import cli; cli.build_parser().parse_args(['mirror', '--config', 'x']); "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('botocore', 'configupdater', 'paramiko', 'tomlkit', 'rich'))))"  # boto3 itself: a lazy stub
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.split() == []


def test_the_molecule_scenario_mirrors_from_the_source_its_prepare_starts() -> None:
    """molecule/ecr_mirror copies from source.py's registry into the stand-in's, which its host's names reach."""
    from ecrkit import mirror  # noqa: PLC0415
    from testbed.standin import API_ADDRESS, API_HOST, REGISTRY_ADDRESS, REGISTRY_HOST  # noqa: PLC0415

    scenario = yaml.safe_load((ROOT / "molecule" / "ecr_mirror" / "molecule.yml").read_text())
    config = mirror.check(scenario["provisioner"]["inventory"]["group_vars"]["all"]["ecr_mirror_config"], "molecule")
    source = (ROOT / "molecule" / "ecr_mirror" / "source.py").read_text()
    (address,) = config["plain_http"]
    assert f'ADDRESS = "{address}"' in source
    assert {image["source"] for image in config["images"]} == {f"{address}/team/tool", f"{address}/team/multi"}
    assert config["target"] == REGISTRY_HOST
    (platform,) = scenario["platforms"]
    assert platform["network"] == "host"
    assert platform["etc_hosts"] == {API_HOST: API_ADDRESS, REGISTRY_HOST: REGISTRY_ADDRESS}
    assert {"prepare", "verify", "cleanup"} <= set(scenario["scenario"]["test_sequence"])
