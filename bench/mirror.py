"""Mirror benchmark: `ecrkit mirror` against Debian's `skopeo sync`, the same images, the same path.

A source registry (Debian's docker-registry, plain HTTP on loopback) holds 6 repositories of 4 tags
each (one of them a two-platform index); every image has 3 layers of incompressible bytes (about 2, 5
and 10 MB): the 10 MB one shared by every tag of a repository, the 5 MB one by pairs of tags. Both
tools copy them into the stand-in's ECR registry through the same helper and ~/.docker/config.json
(credHelpers), each into repositories of its own: a first copy, then runs that find nothing to
copy (5 per tool and round, the tools taking turns run by run: a few tenths of a second each, they
move with the machine's load). Order alternates over 3 rounds; the figures are medians. After every
round the digests at the target are checked equal to the source's. ecrkit runs from bytecode, as an
installed package does.

Bytes read from the source, and the requests made at the source and at the target (per tag: all of a run's
requests, 401s and 404s included, over the set's 24 tags), come from each registry's own access log, the
same way for both tools; GetAuthorizationToken
requests from the stand-in's count (each run with a fresh helper cache); peak memory is the tool's
process tree's maximum RSS (wait4). Run: make bench; BENCH_SCALE=0.05 BENCH_ROUNDS=1 for a quick check.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from testbed.standin import REGISTRY_HOST, StandIn, registry_requests, settled_size

SOURCE = "127.0.0.5:5000"
REPOSITORIES, TAGS = 6, 4
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
NO_CHANGE_RUNS = int(os.environ.get("BENCH_NO_CHANGE_RUNS", "5"))  # per tool and round
JOBS = 8
CHUNK_MIB = 1  # ecrkit.registry.CHUNK
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
IMAGE = "application/vnd.docker.distribution.manifest.v2+json"
LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
BLOB_INFO_CACHE = "/var/lib/containers/cache"
CHECKOUT = Path(__file__).resolve().parent.parent
BYTECODE = Path(tempfile.gettempdir()) / "ecrkit-bench-mirror-bytecode"  # ecrkit's compiled modules


@dataclass
class Run:
    seconds: float
    max_rss_mib: float
    source_bytes: int
    tokens: int
    source_requests: int  # counted at the source registry (its access log)
    target_requests: int  # counted at the stand-in's registry (its access log)
    kinds: Counter[str]  # the requests by where, method, route and (4xx, 5xx) status


def blob(size: int) -> bytes:
    return os.urandom(max(1, int(size * SCALE)))


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "size": len(data), "digest": digest(data)}


def put_blob(repository: str, data: bytes) -> None:
    base = f"http://{SOURCE}/v2/{repository}/blobs"
    if requests.head(f"{base}/{digest(data)}", timeout=30).status_code == 200:
        return
    location = requests.post(f"{base}/uploads/", timeout=30).headers["Location"]
    separator = "&" if "?" in location else "?"
    answer = requests.put(f"{location}{separator}digest={digest(data)}", data=data, timeout=60,
                          headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    answer.raise_for_status()


def put_manifest(repository: str, reference: str, body: bytes, media_type: str) -> None:
    answer = requests.put(f"http://{SOURCE}/v2/{repository}/manifests/{reference}", data=body, timeout=30,
                          headers={"Content-Type": media_type})  # fmt: skip
    answer.raise_for_status()


def image(repository: str, layers: list[bytes], architecture: str = "amd64") -> bytes:
    config = json.dumps({"architecture": architecture, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [digest(x) for x in layers]}}).encode()  # fmt: skip
    for data in (*layers, config):
        put_blob(repository, data)
    return json.dumps({"schemaVersion": 2, "mediaType": IMAGE, "config": descriptor(CONFIG, config),
                       "layers": [descriptor(LAYER, x) for x in layers]}).encode()  # fmt: skip


def fill_source() -> tuple[dict[str, list[str]], int]:
    """The repositories and their tags; the unique blob bytes of each repository, added up."""
    wanted: dict[str, list[str]] = {}
    unique = 0
    for number in range(1, REPOSITORIES + 1):
        repository = f"bench-app{number}"  # one path component: skopeo sync keeps only the last
        base, pairs = blob(10_000_000), [blob(5_000_000), blob(5_000_000)]
        seen: dict[str, int] = {}
        tags = [f"1.{tag}" for tag in range(TAGS)]
        for index, tag in enumerate(tags):
            own = blob(2_000_000)
            layers = [base, pairs[index // 2], own]
            manifest = image(repository, layers)
            seen |= {digest(x): len(x) for x in layers} | config_sizes(manifest)
            if number == REPOSITORIES and index == TAGS - 1:  # one multi-arch index
                arm = [base, pairs[1], blob(2_000_000)]
                other = image(repository, arm, "arm64")
                seen |= {digest(x): len(x) for x in arm} | config_sizes(other)
                entries = []
                for body, arch in ((manifest, "amd64"), (other, "arm64")):
                    put_manifest(repository, digest(body), body, IMAGE)
                    entries.append({**descriptor(IMAGE, body), "platform": {"architecture": arch, "os": "linux"}})
                index_body = json.dumps({"schemaVersion": 2, "mediaType": LIST, "manifests": entries}).encode()
                put_manifest(repository, tag, index_body, LIST)
            else:
                put_manifest(repository, tag, manifest, IMAGE)
        wanted[repository] = tags
        unique += sum(seen.values())
    return wanted, unique


def config_sizes(manifest: bytes) -> dict[str, int]:
    config = json.loads(manifest)["config"]
    return {config["digest"]: config["size"]}


def source_registry(state: Path) -> subprocess.Popen[bytes]:
    config = {"version": 0.1, "log": {"level": "info", "formatter": "json"}, "http": {"addr": SOURCE},
              "storage": {"filesystem": {"rootdirectory": str(state / "data")}}}  # fmt: skip
    (state / "config.yml").write_text(json.dumps(config))
    log = open(state / "access.log", "ab")  # noqa: SIM115 - the server's, closed with it
    server = subprocess.Popen(["docker-registry", "serve", str(state / "config.yml")], stdout=log, stderr=log)
    for _ in range(100):
        try:
            requests.get(f"http://{SOURCE}/v2/", timeout=1)
            return server
        except requests.ConnectionError:
            time.sleep(0.1)
    sys.exit("the source registry did not start")


def blob_bytes_served(log: Path, since: int) -> int:
    """Bytes of blob bodies the source registry sent after byte `since` of its log."""
    total = 0
    with log.open("rb") as handle:
        handle.seek(since)
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("http.request.method") == "GET" and "/blobs/sha256:" in entry.get("http.request.uri", ""):
                total += int(entry.get("http.response.written", 0))
    return total


def timed(stand_in: StandIn, argv: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Wall-clock seconds and peak RSS (MiB) of the tool; exits on failure. GNU time measures the RSS:
    a child of this process would count this process's own memory as its peak (Linux records the
    old image's high-water mark at exec)."""
    rss = log.with_suffix(".rss")
    command = ["/usr/bin/time", "-f", "%M", "-o", str(rss),
               "nsenter", f"--target={stand_in._holder_pid()}", "--mount", "--", *argv]  # fmt: skip
    started = time.perf_counter()
    with log.open("wb") as output:
        done = subprocess.run(command, env=env, stdout=output, stderr=subprocess.STDOUT, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{log.read_text()[-3000:]}")
    return elapsed, int(rss.read_text().split()[-1]) / 1024


def check_digests(stand_in: StandIn, env: dict[str, str], prefix: str, wanted: dict[str, list[str]]) -> None:
    pairs = [(repository, tag) for repository, tags in wanted.items() for tag in tags]
    code = (
        "import json, sys; from ecrkit.mirror import helper_credentials; from ecrkit.registry import Registry; "
        f"r = Registry({REGISTRY_HOST!r}, credentials=helper_credentials({REGISTRY_HOST!r})); "
        f"print(json.dumps([r.manifest_digest({prefix!r} + '/' + repo, tag) for repo, tag in {pairs!r}]))"
    )
    done = stand_in.run([sys.executable, "-c", code], env)
    found = json.loads(done.stdout) if done.returncode == 0 else done.stderr
    expected = []
    for repository, tag in pairs:
        head = requests.head(f"http://{SOURCE}/v2/{repository}/manifests/{tag}", timeout=30,
                             headers={"Accept": f"{LIST}, {IMAGE}"})  # fmt: skip
        expected.append(head.headers["Docker-Content-Digest"])
    if found != expected:
        sys.exit(f"{prefix}: digests at the target differ from the source's: {found} != {expected}")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="ecrkit-bench-mirror-"))
    (work / "source").mkdir()
    server = source_registry(work / "source")
    stand_in = StandIn(work / "standin")
    Path(BLOB_INFO_CACHE).mkdir(parents=True, exist_ok=True)  # the mount point
    try:
        wanted, unique = fill_source()
        byte_compile()
        stand_in.up()
        runs: dict[tuple[str, str], list[Run]] = {}
        for round_ in range(1, ROUNDS + 1):
            tools = ["ecrkit", "skopeo"] if round_ % 2 else ["skopeo", "ecrkit"]
            for tool in tools:
                run = one_run(stand_in, work, tool, "first copy", f"r{round_}-{tool}", wanted)
                runs.setdefault((tool, "first copy"), []).append(run)
            # The no-change runs take a few tenths of a second each, so the machine's load moves them a
            # lot: several per round, the two tools taking turns run by run.
            for attempt in range(1, NO_CHANGE_RUNS + 1):
                for tool in tools:
                    run = one_run(stand_in, work, tool, "no-change", f"r{round_}-{tool}", wanted, attempt)
                    runs.setdefault((tool, "no-change"), []).append(run)
            for tool in tools:
                check_digests(stand_in, client_env(stand_in, work / "check"), f"r{round_}-{tool}", wanted)
        report(runs, unique)
    finally:
        stand_in.down()
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)  # the source's and the stand-in's blobs: 0.5 GB a run
    return 0


def client_env(stand_in: StandIn, home: Path) -> dict[str, str]:
    """A home whose ~/.docker/config.json names the helper for the registry; a fresh helper cache; ecrkit
    from this checkout, run from bytecode (byte_compile) as an installed package is."""
    (home / ".docker").mkdir(parents=True, exist_ok=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"credHelpers": {REGISTRY_HOST: "ecr-login"}}))
    env = stand_in.client_env(home) | {
        "REQUESTS_CA_BUNDLE": str(stand_in.ca),
        "AWS_ECR_CACHE_DIR": str(home / "ecr-cache"),
        "PYTHONPATH": str(CHECKOUT),
        "PYTHONPYCACHEPREFIX": str(BYTECODE),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def byte_compile() -> None:
    """Compile ecrkit's modules once, into BYTECODE rather than the checkout, as pip does when it installs
    a package: where PYTHONDONTWRITEBYTECODE is set (the environment this ran in had it) every run of the
    checkout would compile ecrkit from source again (30 ms of a no-change run), which no installed ecrkit
    does."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(CHECKOUT / "ecrkit")],
                   env=env | {"PYTHONPYCACHEPREFIX": str(BYTECODE)}, check=True)  # fmt: skip


def one_run(  # noqa: PLR0917 - one cell of the table
    stand_in: StandIn, work: Path, tool: str, phase: str, prefix: str, wanted: dict[str, list[str]], attempt: int = 1
) -> Run:
    home = work / "homes" / f"{prefix}-{phase.replace(' ', '-')}-{attempt}"
    env = client_env(stand_in, home)
    log = work / "source" / "access.log"
    since, tokens = settled_size(log), stand_in.token_requests()
    since_target = settled_size(stand_in.registry_log)
    if tool == "ecrkit":
        images = [{"source": f"{SOURCE}/{repo}", "tags": tags} for repo, tags in wanted.items()]
        config = {"target": REGISTRY_HOST, "prefix": prefix, "plain_http": [SOURCE], "images": images}
        (home / "mirror.yml").write_text(yaml.safe_dump(config))
        argv = [sys.executable, "-m", "ecrkit", "mirror", "--config", str(home / "mirror.yml"), "--jobs", str(JOBS)]
    else:
        sync = {SOURCE: {"tls-verify": False, "images": dict(wanted)}}
        (home / "sync.yml").write_text(yaml.safe_dump(sync))
        # skopeo run as root keeps a blob-info cache in /var/lib/containers/cache across runs, and
        # mounts what it copied before from there: each run gets an empty one of its own, as
        # ecrkit starts each run knowing nothing.
        (home / "blob-cache").mkdir()
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                f'mount --bind "{home}/blob-cache" {BLOB_INFO_CACHE} && exec "$@"', "sh",
                "skopeo", "sync", "--all", "--preserve-digests", "--src", "yaml", "--dest", "docker",
                str(home / "sync.yml"), f"{REGISTRY_HOST}/{prefix}"]  # fmt: skip
    seconds, rss = timed(stand_in, argv, env, home / "output.log")
    at_source, at_target = registry_requests(log, since), registry_requests(stand_in.registry_log, since_target)
    kinds = Counter(f"{where} {r.method} {r.kind}{'' if r.status < 400 else f' {r.status}'}"
                    for where, found in (("source", at_source), ("target", at_target)) for r in found)  # fmt: skip
    return Run(seconds, rss, blob_bytes_served(log, since), stand_in.token_requests() - tokens, len(at_source),
               len(at_target), kinds)  # fmt: skip


def report(runs: dict[tuple[str, str], list[Run]], unique: int) -> None:
    def median(tool: str, phase: str, field: str) -> float:
        return float(statistics.median(getattr(run, field) for run in runs[(tool, phase)]))

    first = median("ecrkit", "first copy", "seconds") / median("skopeo", "first copy", "seconds")
    again = median("ecrkit", "no-change", "seconds") / median("skopeo", "no-change", "seconds")
    rss_e = max(median("ecrkit", phase, "max_rss_mib") for phase in ("first copy", "no-change"))
    rss_s = max(median("skopeo", phase, "max_rss_mib") for phase in ("first copy", "no-change"))
    copying = median("ecrkit", "first copy", "max_rss_mib") - median("ecrkit", "no-change", "max_rss_mib")
    for (tool, phase), values in runs.items():
        for number, run in enumerate(values, start=1):
            print(f"    run {number} {tool} {phase}: {run.seconds:.2f} s, {run.max_rss_mib:.0f} MiB, "
                  f"{run.source_bytes / 2**20:.1f} MiB read, {run.tokens} token request(s), "
                  f"{run.source_requests} requests at the source, {run.target_requests} at the target")  # fmt: skip
    for (tool, phase), values in runs.items():
        print(f"    requests, {tool} {phase} (its last run): "
              + ", ".join(f"{kind} {count}" for kind, count in sorted(values[-1].kinds.items())))  # fmt: skip
    print(f"mirror set: {REPOSITORIES} repositories, {REPOSITORIES * TAGS} tags, {unique / 2**20:.1f} MiB unique, "
          f"{ROUNDS} rounds, {NO_CHANGE_RUNS} no-change runs per tool and round, --jobs {JOBS}")  # fmt: skip
    for tool in ("ecrkit", "skopeo"):
        for phase in ("first copy", "no-change"):
            print(f"mirror {phase} {tool} seconds: {median(tool, phase, 'seconds'):.2f}")
    print(f"mirror first copy ecrkit/skopeo: {first:.2f} (target <= 0.5)")
    print(f"mirror no-change ecrkit/skopeo: {again:.2f} (target <= 0.5)")
    for tool in ("ecrkit", "skopeo"):
        read = median(tool, "first copy", "source_bytes") / unique
        print(f"mirror source bytes read / unique bytes, {tool}: {read:.2f} (target == 1.00)")
    for tool in ("ecrkit", "skopeo"):
        for phase in ("first copy", "no-change"):
            tokens = max(run.tokens for run in runs[(tool, phase)])
            print(f"mirror token requests per run, {tool} {phase}: {tokens} (target <= 1)")
    tags = REPOSITORIES * TAGS
    for where in ("source", "target"):
        for phase in ("first copy", "no-change"):
            ours, theirs = (median(tool, phase, f"{where}_requests") / tags for tool in ("ecrkit", "skopeo"))
            print(f"mirror requests per tag at the {where}, skopeo {phase}: {theirs:.2f}")
            print(f"mirror requests per tag at the {where}, ecrkit {phase}: {ours:.2f} (target <= {theirs:.2f})")
    print(f"mirror peak memory ecrkit MiB: {rss_e:.0f}")
    print(f"mirror peak memory skopeo MiB: {rss_s:.0f}")
    print(f"mirror peak memory ecrkit/skopeo: {rss_e / rss_s:.2f} (target <= 2)")
    print(f"mirror memory for copying, ecrkit (first copy - no-change) MiB: {copying:.0f} "
          f"(target <= {JOBS * CHUNK_MIB * 4})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
