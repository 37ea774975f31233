"""A stand-in for the EC2 instance metadata service (IMDS), in network namespaces of its own.

What it serves, as EC2 does:
- IMDSv2: `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` (1-21600) gives a
  token; a GET carrying `X-aws-ec2-metadata-token` must carry a valid one (401 otherwise); a GET
  without one is answered only while the instance allows IMDSv1 (`http_tokens` "optional"), else 401;
- `meta-data/iam/security-credentials/` (the role's name; 404 without a role) and
  `.../<role>`: temporary credentials that expire after `credential_lifetime` seconds and are
  replaced half-way through, as EC2 rotates them. They are recorded in `issued.json`, where the
  AWS/ECR stand-in's API (testbed.standin.api_app) checks them: expired or unknown ones are refused
  with ExpiredTokenException, so a client must fetch the new ones;
- the instance identity document (region, account, instance id);
- the response hop limit: the answer to the token PUT leaves with IP TTL = `hop_limit`
  (setsockopt IP_TTL on the accepted socket), so it dies at a router `hop_limit` hops away. A job
  container behind the job host's bridge is one routing hop further than the host: at hop limit 1
  it gets no token, as on EC2. As on EC2, the limit applies to the token's PUT only: GETs of
  IMDSv1 are not limited, which is why IMDSv1 allowed exposes the role to containers.

The settings (`settings.json` in the state directory) are read on every request, so a test
changes the hop limit or the token rule of a running stand-in (`ImdsStandIn.configure`).

The network (`ImdsStandIn.up`, `add_host`, `add_job_network`): the stand-in listens on
169.254.169.254 in a network namespace of its own, on a bridge that each host's namespace joins
by a veth pair (host addresses 169.254.0.N/16, as an instance's link-local path to IMDS). A job
network is a namespace behind a host (10.N.0.0/24, the host its router with forwarding on): a real
routing hop, where the kernel decrements the TTL. Nothing is set up in the machine's own network
namespace: 169.254.169.254 exists only inside these. Needs root (`ip netns`).

    python -m testbed.standin_imds serve STATE_DIR    (run by ImdsStandIn.up inside its namespace)
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from testbed.standin import ACCOUNT, REGION

IMDS_ADDRESS = "169.254.169.254"
IMDS_PORT = 80
DEFAULT_ROLE = "ecrkit-host"
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TOKEN_TTL = 21600
ISSUED_KEY_PREFIX = "ASIAIMDS"  # keys the API checks against issued.json (20 characters, as AWS's)
DEFAULT_TTL = 64  # what Linux gives every other answer (net.ipv4.ip_default_ttl)
HTTP_TOKENS = ("required", "optional")
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class ImdsSettings:
    """What the instance's launch template says, plus the stand-in's credential lifetime."""

    http_tokens: str = "required"  # MetadataOptions.HttpTokens
    hop_limit: int = 1  # MetadataOptions.HttpPutResponseHopLimit
    role: str = DEFAULT_ROLE  # the instance profile's role; "" for an instance without one
    credential_lifetime: int = 900  # seconds; EC2 gives hours, the stand-in minutes or less
    region: str = REGION
    account: str = ACCOUNT
    instance_id: str = "i-0ec2c0ffee0000001"

    def __post_init__(self) -> None:
        if self.http_tokens not in HTTP_TOKENS:
            raise ValueError(f"http_tokens: {self.http_tokens!r} is not accepted; expected one of {HTTP_TOKENS}")
        if isinstance(self.hop_limit, bool) or not isinstance(self.hop_limit, int) or not 1 <= self.hop_limit <= 64:
            raise ValueError(f"hop_limit: {self.hop_limit!r} is not accepted; expected an integer from 1 to 64")
        if self.credential_lifetime < 2:
            raise ValueError(f"credential_lifetime: {self.credential_lifetime!r} is not accepted; expected >= 2 s")


def read_settings(state: Path) -> ImdsSettings:
    path = state / "settings.json"
    return ImdsSettings(**json.loads(path.read_text())) if path.exists() else ImdsSettings()


def issued_credentials(state: Path) -> dict[str, dict[str, Any]]:
    """The credentials the stand-in handed out: access key -> {"token", "expiration" (epoch)}."""
    path = state / "issued.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def credential_refusal(state: Path, access_key: str, session_token: str, now: float | None = None) -> str | None:
    """Why the API refuses keys the IMDS stand-in issued (expired, unknown, wrong token), or None."""
    entry = issued_credentials(state).get(access_key)
    if entry is None:
        return "The security token included in the request is invalid"
    if entry["token"] != session_token:
        return "The security token included in the request is invalid"
    if (time.time() if now is None else now) >= entry["expiration"]:
        return "The security token included in the request is expired"
    return None


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class _Service:
    """The server's state: tokens it gave (in memory, as they are per instance) and credentials."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.tokens: dict[str, float] = {}
        self.lock = threading.Lock()
        self.current: dict[str, Any] | None = None

    def credentials(self, settings: ImdsSettings) -> dict[str, Any]:
        now = time.time()
        with self.lock:
            current = self.current
            if current is None or current["expiration"] - now < settings.credential_lifetime / 2:
                issued = issued_credentials(self.state)
                number = len(issued) + 1
                current = {
                    "key": f"{ISSUED_KEY_PREFIX}{number:012d}",
                    "secret": secrets.token_urlsafe(30),
                    "token": secrets.token_urlsafe(48),
                    "expiration": int(now) + settings.credential_lifetime,
                    "issued": now,
                }
                issued[current["key"]] = {"token": current["token"], "expiration": current["expiration"]}
                scratch = self.state / "issued.json.new"
                scratch.write_text(json.dumps(issued))
                scratch.replace(self.state / "issued.json")
                self.current = current
        return {
            "Code": "Success",
            "LastUpdated": _iso(current["issued"]),
            "Type": "AWS-HMAC",
            "AccessKeyId": current["key"],
            "SecretAccessKey": current["secret"],
            "Token": current["token"],
            "Expiration": _iso(current["expiration"]),
        }


def _handler(service: _Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "EC2ws"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            with open(service.state / "requests.log", "a") as log:
                log.write(f"{time.time():.3f} {self.client_address[0]} {format % args}\n")

        def _send(
            self,
            code: int,
            body: str = "",
            content_type: str = "text/plain",
            ttl: int = DEFAULT_TTL,
            headers: Mapping[str, str] | None = None,
        ) -> None:
            self.connection.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            data = body.encode()
            self.send_response(code)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            settings = read_settings(service.state)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if self.path != "/latest/api/token":
                self._send(404 if self.path.startswith("/latest/") else 400)
                return
            if self.headers.get("X-Forwarded-For"):  # IMDS refuses what a proxy forwards
                self._send(403)
                return
            ttl_text = self.headers.get(TOKEN_TTL_HEADER, "")
            if not ttl_text.isdigit() or not 1 <= int(ttl_text) <= MAX_TOKEN_TTL:
                self._send(400)
                return
            token = secrets.token_urlsafe(42)
            with service.lock:
                service.tokens[token] = time.time() + int(ttl_text)
            # The hop limit: this answer (and every packet after it on this connection) dies after
            # `hop_limit` routers.
            # The SDKs read the token's lifetime from the answer's header, as IMDS sends it.
            self._send(200, token, ttl=settings.hop_limit, headers={TOKEN_TTL_HEADER: ttl_text})

        def do_GET(self) -> None:
            settings = read_settings(service.state)
            token = self.headers.get(TOKEN_HEADER)
            if token is not None:
                with service.lock:
                    expiry = service.tokens.get(token, 0.0)
                if expiry <= time.time():
                    self._send(401)
                    return
            elif settings.http_tokens == "required":
                self._send(401)
                return
            found = self._answer(settings)
            if found is None:
                self._send(404)
            else:
                self._send(200, *found)

        def _answer(self, settings: ImdsSettings) -> tuple[str, str] | None:
            path = self.path.split("?")[0].rstrip("/")
            if settings.role and path == f"/latest/meta-data/iam/security-credentials/{settings.role}":
                return json.dumps(service.credentials(settings), indent=2), "text/plain"
            return _pages(settings).get(path)

    return Handler


def _pages(settings: ImdsSettings) -> dict[str, tuple[str, str]]:
    """What a GET finds, by path without a trailing slash: (body, content type); the role's
    credentials are not among them (asking for them issues them)."""
    document = {
        "accountId": settings.account,
        "region": settings.region,
        "availabilityZone": f"{settings.region}a",
        "instanceId": settings.instance_id,
        "instanceType": "t3.small",
        "imageId": "ami-0ec2c0ffee0000001",
        "architecture": "x86_64",
        "privateIp": "10.0.0.10",
        "pendingTime": _iso(time.time() - 3600),
        "version": "2017-09-30",
    }
    pages = {
        "/latest/meta-data": ("ami-id\niam/\ninstance-id\nplacement/\n", "text/plain"),
        "/latest/meta-data/instance-id": (settings.instance_id, "text/plain"),
        "/latest/meta-data/placement/region": (settings.region, "text/plain"),
        "/latest/dynamic/instance-identity/document": (json.dumps(document, indent=2), "text/plain"),
    }
    if not settings.role:
        return pages
    roles = "/latest/meta-data/iam/security-credentials"
    profile = f"arn:aws:iam::{settings.account}:instance-profile/{settings.role}"
    info = {"Code": "Success", "LastUpdated": _iso(time.time()), "InstanceProfileArn": profile}
    pages["/latest/meta-data/iam/info"] = (json.dumps(info, indent=2), "text/plain")
    pages[roles] = (settings.role, "text/plain")
    return pages


def serve(state: Path, address: str = IMDS_ADDRESS, port: int = IMDS_PORT) -> None:
    server = ThreadingHTTPServer((address, port), _handler(_Service(state)))
    server.daemon_threads = True
    server.serve_forever()


def relay(netns: str, listen: tuple[str, int], target: tuple[str, int]) -> None:
    """Accept on `listen` inside the network namespace `netns` and carry each connection to
    `target` in this process's own namespace: a host's namespace reaches the AWS/ECR stand-in's
    API (on this machine's loopback) at its own loopback, and nothing else of this machine."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    other = os.open(netns, os.O_RDONLY)
    if libc.setns(other, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), f"setns {netns}")
    server = socket.create_server(listen)  # the socket stays in the namespace it was made in
    if libc.setns(own, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns back")
    while True:
        client, _ = server.accept()
        threading.Thread(target=_carry, args=(client, target), daemon=True).start()


def _carry(client: socket.socket, target: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(target, timeout=10)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


# -- the network ---------------------------------------------------------------------------


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class ImdsStandIn:
    """The IMDS stand-in and the namespaces that reach it (see the module's docstring)."""

    def __init__(self, state: Path, prefix: str | None = None) -> None:
        self.state = state.resolve()
        # Namespace names are machine-wide: unique per stand-in.
        self.prefix = prefix or f"ecrkit-imds-{os.getpid()}-{secrets.token_hex(2)}"
        self.namespace = f"{self.prefix}-imds"
        self.hosts: dict[str, int] = {}  # host namespace -> its number N (169.254.0.N+1, 10.N.0.0/24)
        self.jobs: dict[str, str] = {}  # job namespace -> its host namespace

    # -- settings and what tests look at -----------------------------------------------------

    def configure(self, **changes: Any) -> ImdsSettings:
        """Change the running stand-in's settings (http_tokens, hop_limit, role, credential_lifetime...)."""
        settings = replace(read_settings(self.state), **changes)
        scratch = self.state / "settings.json.new"
        scratch.write_text(json.dumps(asdict(settings)))
        scratch.replace(self.state / "settings.json")
        return settings

    def issued(self) -> dict[str, dict[str, Any]]:
        return issued_credentials(self.state)

    def keys_used(self) -> list[tuple[str, str]]:
        """(access key, "accepted" or "refused") of each call to the AWS/ECR stand-in's API with
        credentials this stand-in issued, in order."""
        path = self.state / "keys-used"
        lines = path.read_text().splitlines() if path.exists() else []
        return [(key, answer) for key, _, answer in (line.partition(" ") for line in lines)]

    def run(
        self, namespace: str, argv: Iterable[str], timeout: float = 30, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in one of the stand-in's namespaces (a host's or a job network's)."""
        return subprocess.run(
            ["ip", "netns", "exec", namespace, *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env=dict(env) if env is not None else None,
        )

    def netns_path(self, namespace: str) -> str:
        """For `podman run --network=ns:PATH`: a container that joins a host's namespace."""
        return f"/run/netns/{namespace}"

    # -- lifecycle ---------------------------------------------------------------------------

    def up(self, settings: ImdsSettings | None = None) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        for stale in ("issued.json", "keys-used"):
            (self.state / stale).unlink(missing_ok=True)
        self.configure(**asdict(settings or read_settings(self.state)))
        (self.state / "prefix").write_text(self.prefix)
        _ip("netns", "add", self.namespace)
        _ip("-n", self.namespace, "link", "set", "lo", "up")
        _ip("-n", self.namespace, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.namespace, "addr", "add", f"{IMDS_ADDRESS}/16", "dev", "br0")
        _ip("-n", self.namespace, "link", "set", "br0", "up")
        serve = [sys.executable, "-m", "testbed.standin_imds", "serve", str(self.state)]
        server = self._spawn("server", ["ip", "netns", "exec", self.namespace, *serve])
        deadline = time.monotonic() + 30
        ready = ["curl", "-s", "-o", "/dev/null", "-m", "1", f"http://{IMDS_ADDRESS}/"]
        while self.run(self.namespace, ready).returncode:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"IMDS stand-in did not start; its log: {(self.state / 'server.log').read_text()}")
            time.sleep(0.1)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        """A process of the stand-in's, in a session of its own, logging to <name>.log, its pid in <name>.pid."""
        with open(self.state / f"{name}.log", "ab") as log:  # the child keeps its own copy open
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            )  # fmt: skip
        (self.state / f"{name}.pid").write_text(str(process.pid))
        return process

    def add_host(self, name: str) -> str:
        """A host's network namespace, one link away from IMDS; returns its name."""
        number = len(self.hosts) + 1
        namespace = f"{self.prefix}-{name}"
        _ip("netns", "add", namespace)
        self.hosts[namespace] = number
        _ip("-n", namespace, "link", "set", "lo", "up")
        peer = ("peer", "name", f"h{number}", "netns", self.namespace)
        _ip("-n", namespace, "link", "add", "eth0", "type", "veth", *peer)
        _ip("-n", self.namespace, "link", "set", f"h{number}", "master", "br0", "up")
        _ip("-n", namespace, "addr", "add", f"169.254.0.{number + 1}/16", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        return namespace

    def add_job_network(self, host: str, pid: int | None = None) -> str:
        """A job container's namespace behind `host` (its router, forwarding on): one routing hop
        further from IMDS than the host; returns its name. With `pid`, that process's network
        namespace becomes the job network (a container's, that `docker run --network
        container:NAME` joins), else a new one."""
        number = self.hosts[host]
        namespace = f"{host}-job"
        _ip("netns", *(("attach", namespace, str(pid)) if pid is not None else ("add", namespace)))
        self.jobs[namespace] = host
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", host, "link", "add", "jobs0", "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _ip("-n", host, "addr", "add", f"10.{number}.0.1/24", "dev", "jobs0")
        _ip("-n", host, "link", "set", "jobs0", "up")
        self.run(host, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        _ip("-n", namespace, "addr", "add", f"10.{number}.0.2/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        _ip("-n", namespace, "route", "add", "default", "via", f"10.{number}.0.1")
        _ip("-n", self.namespace, "route", "add", f"10.{number}.0.0/24", "via", f"169.254.0.{number + 1}")
        return namespace

    def relay_to(self, host: str, address: str, port: int) -> None:
        """Make `address:port` of this machine's loopback (the AWS/ECR stand-in's API) reachable at
        the same address inside the host's namespace, through a relay (`relay`)."""
        name = f"relay-{host}-{port}"
        argv = [sys.executable, "-m", "testbed.standin_imds", "relay", self.netns_path(host), address, str(port)]
        process = self._spawn(name, argv)
        deadline = time.monotonic() + 30
        probe = ["python3", "-c", f"import socket; socket.create_connection(('{address}', {port}), 1).close()"]
        while self.run(host, probe).returncode:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"relay to {address}:{port} did not start: {(self.state / f'{name}.log').read_text()}"
                )
            time.sleep(0.1)

    def down(self) -> None:
        for pidfile in [self.state / "server.pid", *self.state.glob("relay-*.pid")]:
            if pidfile.exists():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(pidfile.read_text()), signal.SIGTERM)
                pidfile.unlink()
        # Those of this object, and those a stand-in of the same prefix left (`make run --keep`, then --destroy).
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout.split()
        left = [name for name in listed if name.startswith(f"{self.prefix}-")]
        for namespace in dict.fromkeys([*self.jobs, *self.hosts, *sorted(left, reverse=True), self.namespace]):
            subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, check=False)
        self.jobs.clear()
        self.hosts.clear()


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "relay":
        relay(argv[1], (argv[2], int(argv[3])), (argv[2], int(argv[3])))
        return 0
    if len(argv) != 2 or argv[0] != "serve":
        print("usage: python -m testbed.standin_imds serve STATE_DIR | relay NETNS ADDRESS PORT", file=sys.stderr)
        return 2
    serve(Path(argv[1]).resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
