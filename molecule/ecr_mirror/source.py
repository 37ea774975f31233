"""The ecr_mirror scenario's source registry: Debian's docker-registry (distribution) over plain HTTP on a
loopback address of its own, holding two tags of an image and a two-platform index, as tests/test_mirror.py
builds them. The scenario's host shares the machine's network, so it reaches it as the service would a
registry inside a site.

    python molecule/ecr_mirror/source.py up|down STATE_DIR   (from the checkout: tests.test_mirror is imported)
    python molecule/ecr_mirror/source.py digest REPOSITORY TAG
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import wait_for_url
from tests.test_mirror import IMAGE, LIST, image, push, push_index

ADDRESS = "127.0.0.5:5000"  # not test_mirror's (127.0.0.4): nothing else listens here
IMAGES = {"team/tool": ("1.0", "1.1"), "team/multi": ("1",)}


def up(state: Path) -> None:
    state.mkdir(parents=True, exist_ok=True)
    config = {"version": 0.1, "log": {"level": "warn"}, "http": {"addr": ADDRESS},
              "storage": {"filesystem": {"rootdirectory": str(state / "data")}}}  # fmt: skip
    (state / "config.yml").write_text(json.dumps(config))
    with open(state / "registry.log", "ab") as log:
        server = subprocess.Popen(["docker-registry", "serve", str(state / "config.yml")], stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    (state / "pid").write_text(str(server.pid))
    wait_for_url(f"http://{ADDRESS}/v2/", "the source registry")
    for tag in IMAGES["team/tool"]:
        push(ADDRESS, "team/tool", tag, image(f"tool {tag}"))
    push_index(ADDRESS, "team/multi", "1", {"amd64": image("multi amd64"), "arm64": image("multi arm64", "arm64")})


def down(state: Path) -> None:
    pidfile = state / "pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    pidfile.unlink()


def digest(repository: str, tag: str) -> str:
    request = urllib.request.Request(f"http://{ADDRESS}/v2/{repository}/manifests/{tag}", method="HEAD",
                                     headers={"Accept": f"{LIST}, {IMAGE}"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(answer.headers["Docker-Content-Digest"])


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] in ("up", "down"):
        (up if argv[0] == "up" else down)(Path(argv[1]).resolve())
        return 0
    if len(argv) == 3 and argv[0] == "digest":
        print(digest(argv[1], argv[2]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
