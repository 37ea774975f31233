"""Job-host userdata: one script, in shell and #cloud-config forms, run for real in a fresh
container against a release mirror served on loopback."""

from __future__ import annotations

import email
import hashlib
import http.server
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
import yaml

from ecrkit.errors import InputError
from ecrkit.helper import parse_version, release_url
from ecrkit.renderers.userdata import ARCH, EC2_USERDATA_LIMIT, MIME_PART_NAME, SCRIPT_PATH, render
from ecrkit.settings import CredentialRule
from testbed.hosts import Host, podman, remove_hosts, start_hosts
from tests.conftest import ReleaseMirror, TestedHelper, assert_durable, free_port, run_ecrkit, traced

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
RULE = CredentialRule.build([REGISTRY])
HELPER = Path("/usr/bin/docker-credential-ecr-login")
TARGET = "/usr/local/bin/docker-credential-ecr-login"


def test_the_shell_form_is_strict_bash_that_shellcheck_accepts() -> None:
    script = render(RULE, url=release_url("0.12.0", ARCH, "https://mirror.example.com/releases"))
    assert script.startswith("#!/bin/bash\n") and "\nset -euo pipefail\n" in script
    done = subprocess.run(["shellcheck", "-"], input=script, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def test_the_cloud_config_form_runs_the_same_script() -> None:
    url = release_url("0.12.0", ARCH, "https://mirror.example.com/releases")
    text = render(RULE, url=url, form="cloud-config")
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    [written] = document["write_files"]
    assert written["path"] == SCRIPT_PATH and written["permissions"] == "0700"
    assert written["content"] == render(RULE, url=url)
    assert document["runcmd"] == [[SCRIPT_PATH]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://mirror/helper"}, "--url: .* https:// or http:// URL"),
        ({"url": "https://"}, "--url: 'https://' .* with a host"),
        ({"url": "https://m/h", "sha256": "abc"}, "--sha256"),
        ({"url": "https://m/h", "install_dir": "bin"}, "--install-dir"),
    ],
)
def test_bad_input_is_refused_naming_it(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        render(RULE, **kwargs)  # type: ignore[arg-type]


class Mirror(http.server.SimpleHTTPRequestHandler):
    """Serves the release layout; counts requests; fails a path's first request on demand."""

    requests: list[str]
    flaky: set[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.path in self.flaky:
            self.flaky.discard(self.path)
            self.send_error(503, "try again")
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, type[Mirror]]]:
    """The official layout for the machine's helper (good) and a release whose .sha256 lies (bad)."""
    root = tmp_path_factory.mktemp("mirror")
    digest = hashlib.sha256(HELPER.read_bytes()).hexdigest()
    for version, checksum in (("1.0.0", digest), ("6.6.6", "0" * 64)):
        directory = root / version / "linux-amd64"
        directory.mkdir(parents=True)
        (directory / HELPER.name).write_bytes(HELPER.read_bytes())
        (directory / f"{HELPER.name}.sha256").write_text(f"{checksum}  {HELPER.name}\n")
    handler = type("Handler", (Mirror,), {"requests": [], "flaky": set()})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", free_port()),
        lambda *a: handler(*a, directory=str(root)),
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()


def run_userdata(host: Host, script: str) -> subprocess.CompletedProcess[str]:
    local = Path(f"/tmp/ecrkit-userdata-{os.getpid()}.sh")
    local.write_text(script)
    try:
        podman("cp", str(local), f"{host.name}:/root/userdata.sh")
    finally:
        local.unlink()
    return host.run("bash /root/userdata.sh")


def state(host: Host) -> str:
    """What a run may change: the helper and config.json, with their contents and mtimes."""
    return host.run(f"stat -c '%n %Y %s' {TARGET} /root/.docker/config.json; sha256sum {TARGET}").stdout


@pytest.fixture
def fresh_host() -> Iterator[Host]:
    hosts = start_hosts([f"ecrkit-pytest-userdata-{os.getpid()}"], options=["--network=host"])
    try:
        yield hosts[0]
    finally:
        remove_hosts(hosts)


@pytest.mark.hosts
def test_the_script_installs_merges_and_changes_nothing_the_second_time(
    fresh_host: Host, mirror: tuple[str, type[Mirror]]
) -> None:
    base, handler = mirror
    url = release_url("1.0.0", ARCH, base)
    binary_path = "/1.0.0/linux-amd64/docker-credential-ecr-login"
    handler.flaky.add(binary_path)  # the first download fails: the script retries
    fresh_host.run(
        """mkdir -p /root/.docker && printf '{"auths": {"r.example.com": {}}}' > /root/.docker/config.json"""
    )
    first = run_userdata(fresh_host, render(RULE, url=url))
    assert first.returncode == 0, first.stderr
    assert "attempt 1 of 5" in first.stderr
    assert fresh_host.run(f"sha256sum {TARGET}").stdout.split()[0] == hashlib.sha256(HELPER.read_bytes()).hexdigest()
    config = json.loads(fresh_host.read("/root/.docker/config.json"))
    assert config == {"auths": {"r.example.com": {}}, "credHelpers": {REGISTRY: "ecr-login"}}
    assert fresh_host.run("stat -c %a /root/.docker/config.json").stdout.strip() == "600"

    before, downloads = state(fresh_host), handler.requests.count(binary_path)
    second = run_userdata(fresh_host, render(RULE, url=url))
    assert second.returncode == 0, second.stderr
    assert state(fresh_host) == before
    assert handler.requests.count(binary_path) == downloads  # not downloaded again
    assert "already" in second.stderr


@pytest.mark.hosts
def test_a_wrong_checksum_installs_nothing(fresh_host: Host, mirror: tuple[str, type[Mirror]]) -> None:
    base, _ = mirror
    done = run_userdata(fresh_host, render(RULE, url=release_url("6.6.6", ARCH, base)))
    assert done.returncode != 0 and "nothing installed" in done.stderr
    assert not fresh_host.exists(TARGET) and not fresh_host.exists("/root/.docker/config.json")
    pinned = render(RULE, url=release_url("1.0.0", ARCH, base), sha256="f" * 64)  # a pinned sha256 wins over the file
    done = run_userdata(fresh_host, pinned)
    assert done.returncode != 0 and not fresh_host.exists(TARGET)


def parts_of(text: str) -> list[Message]:
    """The parts of a MIME multi-part text, as cloud-init walks them."""
    return [part for part in email.message_from_string(text).walk() if not part.is_multipart()]


def test_the_mime_form_carries_the_script_as_a_shell_part_that_ec2_accepts() -> None:
    url = release_url("0.12.0", ARCH, "https://mirror.example.com/releases")
    text = render(RULE, url=url, form="mime")
    message = email.message_from_string(text)
    assert message.get_content_type() == "multipart/mixed" and message["MIME-Version"] == "1.0"
    [part] = parts_of(text)
    assert part.get_content_type() == "text/x-shellscript" and part.get_filename() == MIME_PART_NAME
    assert str(part.get_payload()) == render(RULE, url=url)
    assert len(text.encode()) < EC2_USERDATA_LIMIT  # a launch template's UserData, before base64
    assert render(RULE, url=url, form="mime") == text  # a fixed boundary: the role's file stays unchanged


def test_other_parts_are_combined_after_ecrkits_and_typed_by_their_first_line(tmp_path: Path) -> None:
    other = tmp_path / "team.cfg"
    other.write_text("#cloud-config\nruncmd:\n  - [touch, /x]\n")
    done = run_ecrkit("render", "userdata", "--registry", REGISTRY, "--format", "mime", "--with-part", str(other))
    assert done.returncode == 0, done.stderr
    parts = parts_of(done.stdout)
    assert [(p.get_content_type(), p.get_filename()) for p in parts] == [
        ("text/x-shellscript", MIME_PART_NAME),
        ("text/cloud-config", "team.cfg"),
    ]
    refused = run_ecrkit("render", "userdata", "--registry", REGISTRY, "--with-part", str(other))
    assert refused.returncode == 2 and "--format mime" in refused.stderr
    other.write_text("just text\n")
    unknown = run_ecrkit("render", "userdata", "--registry", REGISTRY, "--format", "mime", "--with-part", str(other))
    assert unknown.returncode == 2 and "team.cfg: 'just text'" in unknown.stderr


@pytest.mark.hosts
def test_the_real_releases_install_upgrade_downgrade_and_a_tampered_one_installs_nothing(
    fresh_host: Host, release_mirror: ReleaseMirror
) -> None:
    """With the real helpers on a mirror of the release bucket's layout: 0.7.1, then the newest
    (0.12.0 or what sid has), then 0.7.1 pinned again; the version is the binary's own."""
    older, newest = TestedHelper("trixie"), TestedHelper("sid")

    def install(version: str, sha256: str = "") -> subprocess.CompletedProcess[str]:
        return run_userdata(
            fresh_host, render(RULE, url=release_url(version, ARCH, release_mirror.base_url), sha256=sha256)
        )

    def installed() -> tuple[str, str]:
        said = fresh_host.run(f"{TARGET} -v").stdout
        return parse_version(said), fresh_host.run(f"sha256sum {TARGET}").stdout.split()[0]

    for step, tested in (("fresh", older), ("upgrade", newest), ("pinned downgrade", older)):
        done = install(tested.version)
        assert done.returncode == 0, f"{step}: {done.stderr}"
        assert installed() == (tested.version, tested.sha256()), step

    # A binary changed after its checksum was published, and a checksum that names another binary.
    tampered = newest.path.read_bytes() + b"\0"
    release_mirror.publish("9.9.8", tampered, checksum=newest.sha256())
    release_mirror.publish("9.9.9", newest.path.read_bytes(), checksum=hashlib.sha256(tampered).hexdigest())
    for version in ("9.9.8", "9.9.9"):
        done = install(version)
        assert done.returncode != 0 and "nothing installed" in done.stderr, done.stderr
        assert installed() == (older.version, older.sha256())
    pinned = install(newest.version, sha256=hashlib.sha256(tampered).hexdigest())  # wins over the .sha256 file
    assert pinned.returncode != 0 and "nothing installed" in pinned.stderr
    assert installed() == (older.version, older.sha256())


def test_the_script_flushes_each_file_before_its_rename_and_the_directory_after(
    tmp_path: Path, mirror: tuple[str, type[Mirror]]
) -> None:
    """Run here under strace, in a mount namespace of its own whose /root is a temporary directory."""
    base, _ = mirror
    root, install_dir = tmp_path / "root", tmp_path / "bin"
    root.mkdir()
    script = tmp_path / "userdata.sh"
    script.write_text(render(RULE, url=release_url("1.0.0", ARCH, base), install_dir=str(install_dir)))
    inner = f"mount --bind {root} /root && exec bash {script}"
    calls = traced(["unshare", "--mount", "--propagation", "private", "sh", "-c", inner], tmp_path / "strace.log")
    assert_durable(calls, install_dir / HELPER.name)
    assert_durable(calls, Path("/root/.docker/config.json"))  # strace names the paths as the namespace sees them
    assert (root / ".docker" / "config.json").exists() and sorted(os.listdir(root / ".docker")) == ["config.json"]
