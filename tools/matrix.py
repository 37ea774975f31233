"""The version matrix (docs/support.md): the oldest and the newest ansible-core that meta/runtime.yml
allows, each running ansible-test sanity, the tests that exercise ansible-core, and one Molecule scenario.

    python tools/matrix.py [CORE ...]     every session, or the named ones (make test-matrix)
    python tools/matrix.py --lock         pin tools/matrix/requirements.in into core-<CORE>.txt again

A session is a virtualenv of its own under .cache/matrix/<CORE>, installed with `pip --no-index` from
the local wheelhouse (.cache/wheelhouse), which pip fills once from tools/matrix/core-<CORE>.txt.
ansible-core 2.20 and later need Python 3.12 on the controller and this machine has 3.11: the newest
session runs in a Debian 13 container (python3.13; the trixie base image plus python3-venv) that
sees the checkout at the same path. Its Molecule run drives this machine's podman through `nsenter`
into the mount namespace of the process that started it, so the hosts it makes are ordinary ones.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "tools" / "matrix"
CACHE = ROOT / ".cache"
WHEELHOUSE = CACHE / "wheelhouse"
MOLECULE_LOCK = Path("/tmp/ecrkit-molecule.lock")  # instance names are global (COMMON.md)
CONTROLLER_BASE = "localhost/debian-systemd:trixie"  # tools/base-image.sh trixie
# python3-venv for the session's and ansible-test's virtualenvs; strace for the tests that trace writes.
CONTROLLER_FILE = (f"FROM {CONTROLLER_BASE}\n"
                   "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                   "--no-install-recommends python3-venv strace >/dev/null\n"
                   "RUN rm -rf /var/lib/apt/lists/*\n")  # fmt: skip
# Tagged by what it is built from: a changed Containerfile builds a new image.
CONTROLLER_IMAGE = f"localhost/ecrkit-controller:trixie-{hashlib.sha256(CONTROLLER_FILE.encode()).hexdigest()[:8]}"
# What the dev venv pins that a session must not take: ansible-core is the session's, and Molecule and
# ansible-compat follow it (their releases for 2.17 are older); resolvelib is ansible-core's to bound.
NOT_PINNED = ("ansible", "molecule", "resolvelib")
# The tests that exercise ansible-core without hosts: ansible-test sanity and ansible-doc on the
# installed artifact, the converge action, filters and modules (argument_specs, check and diff mode,
# bad input stopping a play), and the controller's cost of loading ecrkit.
TESTS = [
    "tests/test_collection.py", "tests/test_bad_input.py", "tests/test_files_module.py", "tests/test_writes.py",
    "tests/test_concurrent_writer.py", "tests/test_controller_cost.py", "tests/test_role_docs.py",
    "tests/test_constants.py",
]  # fmt: skip
# ansible-builder is the dev venv's, not a session's.
DESELECT = "not execution_environment"
# containers.podman: Molecule's podman driver; ansible.posix: the json callback the tests read results with;
# besides galaxy.yml's dependencies, which Molecule installs before a run.
COLLECTIONS = ("containers.podman", "ansible.posix")
SESSION_COLLECTIONS = CACHE / "matrix" / "collections"
SCENARIO = "default"  # the helper from the OS package, config.json merged for root and a service user


@dataclass(frozen=True)
class Session:
    core: str  # ansible-core's minor version; the lock file pins the release
    python: str  # the controller's Python (major.minor)
    container: bool  # runs in CONTROLLER_IMAGE (this machine's Python is too old)

    @property
    def lock(self) -> Path:
        return HERE / f"core-{self.core}.txt"

    @property
    def home(self) -> Path:
        return CACHE / "matrix" / self.core

    @property
    def interpreter(self) -> str:
        return "python3" if self.container else f"python{self.python}"


SESSIONS = {
    "2.17": Session("2.17", "3.11", container=False),  # the oldest meta/runtime.yml allows
    "2.21": Session("2.21", "3.13", container=True),  # the newest release on PyPI
}


def log(message: str) -> None:
    print(f"matrix: {message}", flush=True)


def run(argv: list[str | Path], env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
    done = subprocess.run([str(arg) for arg in argv], env=env, cwd=cwd, check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        sys.exit(f"matrix: {' '.join(str(arg) for arg in argv)}: exit {done.returncode}")


def host_pip(*args: str | Path) -> list[str | Path]:
    """This machine's pip (the dev venv's), which downloads for any Python version."""
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def for_python(session: Session) -> list[str]:
    return ["--python-version", session.python, "--only-binary=:all:"]


def lock(session: Session) -> None:
    """Resolve requirements.in with ansible-core <core>.* at the dev venv's pins where they fit, and pin it."""
    pins = [line for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith(("#", *NOT_PINNED))]  # fmt: skip
    with tempfile.TemporaryDirectory() as work:
        constraints = Path(work) / "constraints.txt"
        constraints.write_text("\n".join(pins) + "\n")
        wheels = Path(work) / "wheels"
        run(host_pip("download", "-q", "-d", wheels, *for_python(session), "-c", constraints,
                     "-r", HERE / "requirements.in", f"ansible-core=={session.core}.*"))  # fmt: skip
        pinned = sorted({"==".join(wheel.name.split("-")[:2]) for wheel in wheels.glob("*.whl")}, key=str.lower)
    header = (f"# ansible-core {session.core} on Python {session.python}: tools/matrix/requirements.in pinned by "
              "`python tools/matrix.py --lock`.\n")  # fmt: skip
    session.lock.write_text(header + "\n".join(pinned) + "\n")
    log(f"{session.lock.relative_to(ROOT)}: {len(pinned)} pins")


def fill_wheelhouse(session: Session) -> None:
    """The lock's wheels for the session's Python, downloaded once (pip's cache serves a rebuild)."""
    key = hashlib.sha256(f"{session.python}\n{session.lock.read_text()}".encode()).hexdigest()[:16]
    stamp = WHEELHOUSE / f".downloaded-matrix-{key}"
    if not stamp.exists():
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        run(host_pip("download", "-q", "--no-deps", "-d", WHEELHOUSE, *for_python(session), "-r", session.lock))
        stamp.touch()


def collections() -> None:
    """The collections the tests use besides ansible-core, copied from the dev venv's ansible package (the
    sessions install ansible-core alone, and Galaxy is out of reach here)."""
    import yaml  # noqa: PLC0415  (the container's python3 has no yaml; it never gets here)

    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    for name in (*COLLECTIONS, *galaxy["dependencies"]):
        target = SESSION_COLLECTIONS / "ansible_collections" / name.replace(".", "/")
        if not target.exists():
            pattern = f"lib/python3*/site-packages/ansible_collections/{name.replace('.', '/')}"
            (source,) = Path(sys.prefix).glob(pattern)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))


def controller_image() -> None:
    """Debian 13's python3.13 with venv, on the trixie base image (built by `make image-trixie`)."""
    done = subprocess.run(["podman", "image", "exists", CONTROLLER_IMAGE], check=False)
    if done.returncode == 0:
        return
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "Containerfile").write_text(CONTROLLER_FILE)
        run(["podman", "build", "--quiet", "--tag", CONTROLLER_IMAGE, context])
    log(f"{CONTROLLER_IMAGE}: built")


def podman_wrapper(bin_dir: Path, host_pid: int) -> None:
    """`podman` inside the container: this machine's podman, run in the mount namespace of the process
    that started the container (paths under the checkout and /tmp are the same on both sides). `podman
    mount` fails, so that the podman connection copies files with `podman cp` instead of a mount point
    the container cannot see."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "podman"
    wrapper.write_text(f"""#!/bin/sh
for arg in "$@"; do
  case "$arg" in -*) ;; mount) exit 125 ;; *) break ;; esac
done
exec nsenter --mount=/proc/{host_pid}/ns/mnt -- /usr/bin/podman "$@"
""")
    wrapper.chmod(0o755)


def inside(session: Session, host_pid: int | None) -> None:
    """The session itself, where its Python is: the venv, the tests, the Molecule scenario."""
    venv = session.home / "venv"
    if not (venv / "bin" / "python").exists():
        run([session.interpreter, "-m", "venv", venv])
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
         "--find-links", WHEELHOUSE, "-r", session.lock])  # fmt: skip
    # Where the dev venv's ansible package keeps them: ansible-core finds them with no configuration, as
    # Molecule (which sets ANSIBLE_COLLECTIONS_PATH to the checkout's collections/) needs.
    (site,) = venv.glob("lib/python3*/site-packages")
    shutil.copytree(SESSION_COLLECTIONS / "ansible_collections", site / "ansible_collections", dirs_exist_ok=True)
    path = f"{venv / 'bin'}:{os.environ['PATH']}"
    if host_pid is not None:
        podman_wrapper(session.home / "bin", host_pid)
        path = f"{session.home / 'bin'}:{path}"
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(ROOT), "VIRTUAL_ENV": str(venv)}
    env.pop("ANSIBLE_CONFIG", None)
    version = subprocess.run([venv / "bin" / "ansible", "--version"], env=env, capture_output=True, text=True,
                             check=True).stdout.splitlines()[0]  # fmt: skip
    log(f"{version}, Python {session.python}: sanity and unit tests")
    run([venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not hosts", "-k", DESELECT,
         *TESTS], env=env)  # fmt: skip
    log(f"{version}: molecule test -s {SCENARIO}")
    with MOLECULE_LOCK.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        # The shared config named: Molecule before 26.10 finds no repository root in a git worktree (.git a file).
        base = ROOT / ".config" / "molecule" / "config.yml"
        run([venv / "bin" / "molecule", "--base-config", base, "test", "-s", SCENARIO], env=env)


def start(session: Session) -> None:
    """Fill the wheelhouse here, then run the session here or in the controller container."""
    fill_wheelhouse(session)
    collections()
    session.home.mkdir(parents=True, exist_ok=True)
    if not session.container:
        inside(session, None)
        return
    controller_image()
    # The same paths inside: the checkout, its .cache (a link in a worktree), /tmp (pytest, the lock).
    mounts = {ROOT, CACHE.resolve(), Path("/tmp")}
    # pip's settings (ansible-test fills its own virtualenvs from the index): PIP_CERT, a CA bundle of this
    # machine's, must be there too.
    if cert := os.environ.get("PIP_CERT"):
        mounts.add(Path(cert))
    passed = ["CONTAINERS_CONF", "TERM", "LANG", *(name for name in os.environ if name.startswith("PIP_"))]
    envs = [arg for name in passed if name in os.environ for arg in ("--env", f"{name}={os.environ[name]}")]
    volumes = [arg for mount in sorted(mounts) for arg in ("--volume", f"{mount}:{mount}:ro" if mount.is_file()
                                                         else f"{mount}:{mount}")]  # fmt: skip
    run(["podman", "run", "--rm", "--privileged", "--pid", "host", "--network", "host", *volumes, *envs,
         "--env", f"HOME={session.home / 'home'}", "--env", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
         "--workdir", ROOT, CONTROLLER_IMAGE, "python3", ROOT / "tools" / "matrix.py",
         "--inside", session.core, "--host-pid", str(os.getpid())])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cores", nargs="*", choices=[[], *SESSIONS], help="the sessions to run (default: all)")
    parser.add_argument("--lock", action="store_true", help="pin each session's requirements again")
    parser.add_argument("--inside", choices=SESSIONS, help=argparse.SUPPRESS)
    parser.add_argument("--host-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(SESSIONS[args.inside], args.host_pid)
        return
    for core in args.cores or SESSIONS:
        if args.lock:
            lock(SESSIONS[core])
        else:
            start(SESSIONS[core])


if __name__ == "__main__":
    main()
