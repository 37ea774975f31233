"""Shared fixtures: the ecrkit CLI as a user runs it, and moto running as a real HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
import pytest

import testbed.hosts
from ecrkit.constants import HELPER_BINARY
from ecrkit.helper import binary_version
from testbed.hosts import Host, remove_hosts, start_hosts
from testbed.standin import StandIn

ROOT = Path(__file__).resolve().parent.parent
ECRKIT = [sys.executable, "-m", "ecrkit"]
# The helpers users run, as `make helpers` (tools/fetch-helpers.sh) leaves them: Debian 12's
# 0.6.0, Debian 13's 0.7.1, and whatever sid has (0.12.0 or later).
HELPERS_DIR = ROOT / ".cache" / "helpers"
HELPER_SUITES = ("bookworm", "trixie", "sid")


@dataclass(frozen=True)
class TestedHelper:
    """One fetched helper binary; its version is what the binary says (`-v`), never assumed."""

    __test__ = False  # not a test class

    suite: str

    @property
    def path(self) -> Path:
        return HELPERS_DIR / self.suite / HELPER_BINARY

    @cached_property
    def version(self) -> str:
        if not self.path.exists():
            pytest.fail(f"{self.path} is missing: `make helpers` fetches it")
        return binary_version(str(self.path))

    @property
    def release(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` with this helper first on the PATH (the docker CLI finds it there)."""
        return {**base, "PATH": f"{self.path.parent}:{base.get('PATH', os.environ['PATH'])}"}

    def __str__(self) -> str:  # the test id: the suite and, once fetched, the version
        return f"{self.suite}-{binary_version(str(self.path))}" if self.path.exists() else self.suite


TESTED_HELPERS = [TestedHelper(suite) for suite in HELPER_SUITES]


@pytest.fixture(params=TESTED_HELPERS, ids=str)
def helper(request: pytest.FixtureRequest) -> TestedHelper:
    """Each helper users run, in turn."""
    tested: TestedHelper = request.param
    assert tested.version  # fails, naming `make helpers`, when it was not fetched
    return tested


def run_ecrkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ECRKIT, *args], capture_output=True, text=True, env=env, check=False, cwd=ROOT)


def readme_block(marker: str, doc: str = "README.md") -> str:
    """The fenced block that follows `marker` in `doc` (README.md, docs/<page>.md, roles/<role>/README.md),
    for tests that check the examples the docs show."""
    text = (ROOT / doc).read_text()
    assert text.count(marker) == 1, f"{doc} holds {marker} {text.count(marker)} times"
    fence = text.index("```", text.index(marker))
    start = text.index("\n", fence) + 1
    return text[start : text.index("```", start)]


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A handler for a test's HTTP server: answers a whole body, and logs nothing."""

    def send_body(self, status: int, body: bytes, content_type: str = "") -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_url(url: str, what: str) -> None:
    """Return once `url` answers over HTTP (a server a test started), at most in 10 seconds."""
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start ({url})")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server over HTTP on loopback (with the ECR registry settings it lacks, testbed.standin_ecr);
    tests reach it through AWS_ENDPOINT_URL like any client."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "testbed.standin", "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_url(f"{endpoint}/moto-api/", "moto's server")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def aws_env(moto_endpoint: str) -> dict[str, str]:
    """Environment of a process talking to the stand-in: fake keys, never real ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
    )
    return env


@pytest.fixture
def s3(aws_env: dict[str, str]) -> Any:
    """An S3 client of the stand-in, as the tests' own tool for setting up buckets."""
    return boto3.client(
        "s3",
        endpoint_url=aws_env["AWS_ENDPOINT_URL"],
        region_name=aws_env["AWS_REGION"],
        aws_access_key_id=aws_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=aws_env["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """The local stand-in for AWS and ECR, one per test module: it binds 127.0.0.1:443, so
    it must be down before another module (or `make run`'s) starts one."""
    service = StandIn(tmp_path_factory.mktemp("standin"))
    try:
        service.up()
        yield service
    finally:
        service.down()


@pytest.fixture(scope="module")
def image(stand_in: StandIn) -> str:
    """An image in the stand-in's registry, pushed through the helper."""
    return stand_in.push_image("team/app", "1")


class ReleaseMirror(testbed.hosts.ReleaseMirror):
    """The test bed's release mirror (testbed.hosts.ReleaseMirror), holding the helpers of the matrix."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, [tested.path for tested in TESTED_HELPERS])


@pytest.fixture(scope="module")
def release_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReleaseMirror]:
    mirror = ReleaseMirror(tmp_path_factory.mktemp("releases"))
    try:
        yield mirror
    finally:
        mirror.close()


@contextmanager
def stand_in_host(name: str, stand_in: StandIn) -> Iterator[Host]:
    """A systemd container (podman) that reaches the stand-in, removed afterwards."""
    hosts = start_hosts([f"{name}-{os.getpid()}"], options=stand_in.host_options())
    try:
        yield hosts[0]
    finally:
        remove_hosts(hosts)


def docker_pull(host: Host, image: str, stand_in: StandIn) -> int:
    """`docker pull` as root on the host, with the cache directory the roles make (a service's AWS_ECR_CACHE_DIR)."""
    env = stand_in.host_env() | {"AWS_ECR_CACHE_DIR": "/var/lib/ecr-login"}
    return host.run(f"docker pull {image} && docker rmi {image}", env).returncode


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs of its own (`fill` it, or make it `read_only`), unmounted after. Root only,
    as the machines that run the suite are."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(mount: Path) -> None:
    """Fill a `tiny_tmpfs` to its last block: a disk that is full."""
    with open(mount / ".filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError as exc:
            assert "No space left" in str(exc)


def read_only(mount: Path) -> None:
    """Remount a `tiny_tmpfs` read-only, as a file system remounted after errors is."""
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)


@dataclass(frozen=True)
class Syscall:
    name: str  # fsync, rename, renameat, renameat2
    paths: tuple[str, ...]  # what the call names: the synced descriptor's path, or the rename's source and target


STRACED = ("fsync", "fdatasync", "rename", "renameat", "renameat2")


def traced(argv: list[str], log: Path, env: Mapping[str, str] | None = None, **run: Any) -> list[Syscall]:
    """The fsync and rename calls of `argv` and its children, in order (strace -f -y, its log in
    `log`), with the paths they name; fails if `argv` fails."""
    done = subprocess.run(
        ["strace", "-f", "-y", "-qq", "-e", "signal=none", "-e", f"trace={','.join(STRACED)}", "-o", str(log), *argv],
        capture_output=True, text=True, env=dict(env) if env is not None else None, check=False, **run,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    calls = []
    for line in log.read_text().splitlines():
        found = re.search(r"\b(" + "|".join(STRACED) + r")\((.*)\)\s+=\s+0\b", line)
        if found:
            # A rename's paths are its quoted arguments; an fsync's, what -y says of its descriptor.
            named = re.findall(r'"([^"]*)"', found[2]) or re.findall(r"<([^>]*)>", found[2])
            calls.append(Syscall(found[1], tuple(named)))
    return calls


def assert_durable(calls: list[Syscall], path: Path) -> None:
    """`path` was renamed into place from a staged file fsynced before, and its directory was
    fsynced after: after a power loss it holds the old content or the new, never nothing."""
    renames = [i for i, call in enumerate(calls) if call.name.startswith("rename") and call.paths[-1] == str(path)]
    assert renames, f"{path} was not renamed into place: {calls}"
    at = renames[-1]
    staged = calls[at].paths[0]
    assert any(call.name in ("fsync", "fdatasync") and call.paths == (staged,) for call in calls[:at]), (
        f"{staged} was renamed to {path} without an fsync first: {calls}"
    )
    assert any(call.name == "fsync" and call.paths == (str(path.parent),) for call in calls[at + 1 :]), (
        f"{path.parent} was not fsynced after the rename: {calls}"
    )
