"""settings reads botocore's partitions table from its data file (no botocore.loaders import on every
registry check), and it is the table botocore's own Loader gives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.loaders import Loader

from ecrkit import settings


def test_the_partitions_table_is_the_one_botocores_loader_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings._botocore_partitions() == Loader().load_data("partitions")
    monkeypatch.setenv("AWS_DATA_PATH", "/nonexistent")  # a user's own data path: botocore's Loader decides
    assert settings._botocore_partitions() == Loader().load_data("partitions")


def test_a_registry_is_checked_without_importing_botocore_loaders(tmp_path: Path) -> None:
    code = (
        "import sys; from ecrkit import settings; "
        "settings.private_registry('123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn'); "
        "print('botocore.loaders' in sys.modules)"
    )
    env = {key: value for key, value in os.environ.items() if key != "AWS_DATA_PATH"} | {"HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.strip() == "False"
