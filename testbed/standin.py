"""A local stand-in for AWS and ECR that the real credential helper and docker talk to.

- the ECR API: moto's server app over TLS on 127.0.0.1:443, wrapped so that its tokens expire
  in 12 hours (plain moto says 2015, which defeats the helper's cache), GetAuthorizationToken
  requests are counted, and the API can be told to refuse;
- the registry: Debian's docker-registry over TLS on 127.0.0.2:443, accepting what the tokens
  carry (user AWS, password `<account>-auth-token`);
- a Docker daemon of its own, trusting the test CA.

The helper (Debian's 0.6.0 ignores AWS_ENDPOINT_URL) must reach the real hostnames, so they
are mapped to loopback in a private mount namespace: the machine's /etc/hosts and
/etc/docker are never touched. Every process that resolves those names runs inside it
(`StandIn.run`). Nothing listens beyond loopback.

    python -m testbed.standin up|down STATE_DIR
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.standin_ecr import MissingExtra, moto_app, require_extra

if TYPE_CHECKING:
    from testbed.standin_imds import ImdsStandIn

ACCOUNT = "123456789012"
REGION = "us-east-1"
API_HOST = f"api.ecr.{REGION}.amazonaws.com"
PUBLIC_API_HOST = "api.ecr-public.us-east-1.amazonaws.com"  # the helper's `list` and public.ecr.aws ask it
PORTAL_HOST = f"portal.sso.{REGION}.amazonaws.com"  # IAM Identity Center: SSO profiles trade their token here
API_NAMES = (API_HOST, PUBLIC_API_HOST, PORTAL_HOST)  # all served by the API app on API_ADDRESS
# Docker Hub's names lead nowhere (nothing listens there): a pull that misses the mirror fails
# at once instead of leaving loopback.
DOCKER_HUB_NAMES = ("docker.io", "registry-1.docker.io", "index.docker.io", "auth.docker.io")
NOWHERE = "127.0.0.3"
REGISTRY_HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
API_ADDRESS, REGISTRY_ADDRESS = "127.0.0.1", "127.0.0.2"
TOKEN_PASSWORD = f"{ACCOUNT}-auth-token"  # what moto's GetAuthorizationToken encodes
TOKEN_LIFETIME = 12 * 3600
# The least time the stand-in takes to answer the helper, as AWS over a network does. An answer
# on loopback can come within the helper's own scheduling jitter on a busy machine, and helpers
# before 0.12.0 (Debian 12's 0.6.0, Debian 13's 0.7.1) then lose the response body to a race in
# their HTTP client ("deserialization failed, failed to decode response body, read tcp ...: use
# of closed network connection": 29 of 2560 gets, 32 at a time on 2 busy cores; none of 2560
# with this delay): a failure that real ECR does not provoke, and `make run`'s flaky live get of
# the runner service (its empty cache made the one get there that reached the API).
ANSWER_DELAY = 0.05
GET_TOKEN = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
GET_PUBLIC_TOKEN = "SpencerFrontendService.GetAuthorizationToken"  # ECR Public, which moto lacks
Refusal = str  # an AWS error code such as AccessDeniedException or ThrottlingException
# Fake keys standing in for an instance role (never real ones: the SDK would otherwise look further).
ROLE_KEYS = {"AWS_ACCESS_KEY_ID": "AKIASTANDIN000000000", "AWS_SECRET_ACCESS_KEY": "stand-in-secret"}
HOST_MOUNT = "/run/ecrkit-standin"  # where a test host sees the state directory (socket, CA)
# Held by the process whose stand-in is up: a second one (another test run, make run) waits for
# it instead of failing on port 443 half-way through its start.
UP_LOCK = Path("/run/lock/ecrkit-standin.lock")
IMDS_STATE = "imds"  # the IMDS stand-in's state directory in the stand-in's (testbed.standin_imds)


# A line of the access log docker-registry writes for every request it answers (Apache's combined format):
# 127.0.0.1 - - [06/Dec/2026:03:24:01 +0000] "HEAD /v2/x/manifests/y HTTP/1.1" 404 91 "" "curl/7.88.1"
ACCESS_LINE = re.compile(r'^\S+ \S+ \S+ \[[^]]+\] "([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3}) ', re.ASCII)


ROUTES = {"manifests": "manifest", "blobs": "blob", "uploads": "upload", "tags": "tags", "referrers": "referrers"}


@dataclass(frozen=True)
class Request:
    """One request a registry answered, as its access log has it."""

    method: str
    path: str  # without the query
    status: int

    @property
    def kind(self) -> str:
        """What was asked, by the API's route: manifest, blob, upload, tags, referrers, catalog or base."""
        route = self.path.split("/")[-2:-1]  # /v2/<name>/<route>/<reference>: a name may hold any word
        if self.path == "/v2/_catalog":
            return "catalog"
        return ROUTES.get(route[0], "base") if route else "base"


def registry_requests(log: Path, since: int = 0, settle: float = 0.3) -> list[Request]:
    """The requests a docker-registry answered, read from its access log after byte `since` (401s, 404s and
    failed uploads included: counted where they arrive, whatever the client). The server writes a line
    after its answer is sent, so the log is read once it has not grown for `settle` seconds."""
    size = settled_size(log, settle)
    found = []
    with log.open("rb") as handle:
        handle.seek(since)
        for line in handle.read(size - since).decode(errors="replace").splitlines():
            matched = ACCESS_LINE.match(line)
            if matched:
                found.append(Request(matched[1], matched[2].split("?")[0], int(matched[3])))
    return found


def settled_size(log: Path, settle: float = 0.3) -> int:
    """The log's size once it has not grown for `settle` seconds: where the requests made so far end."""
    size = -1
    while size != (size := log.stat().st_size if log.exists() else 0):
        time.sleep(settle)
    return size


class StandIn:
    def __init__(self, state: Path) -> None:
        self.state = state.resolve()
        self.ca = self.state / "ca.crt"
        self.docker_socket = self.state / "docker.sock"
        self._lock: Any = None

    # -- what tests and users need -------------------------------------------------------

    def run(
        self, argv: Iterable[str], env: Mapping[str, str] | None = None, netns: str = "", **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the stand-in's mount namespace, where the ECR names resolve (and
        in the network namespace `netns`, e.g. an IMDS stand-in's host, if given)."""
        network = ["ip", "netns", "exec", netns] if netns else []
        return subprocess.run(
            [*network, "nsenter", f"--target={self._holder_pid()}", "--mount", "--", *argv],
            env=dict(env) if env is not None else self.client_env(),
            capture_output=True,
            text=True,
            check=False,
            **kwargs,
        )

    def client_env(self, home: Path | None = None) -> dict[str, str]:
        """Environment of a docker CLI user whose helper reaches the stand-in (fake keys)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DOCKER_"))}
        env.update(
            self.host_env(),
            DOCKER_HOST=f"unix://{self.docker_socket}",
            AWS_CA_BUNDLE=str(self.ca),
            AWS_REGION=REGION,
        )
        if home is not None:
            env["HOME"] = str(home)
        return env

    def host_options(self, network: str = "host") -> list[str]:
        """`podman run` options for a systemd host that pulls from the stand-in as from ECR.

        The host shares the machine's network (the API is on its loopback), or joins `network`
        (`ns:<path>`: an IMDS stand-in's host namespace, whose loopback reaches the API through a
        relay), maps the API name in its own /etc/hosts, and reaches the stand-in's daemon through
        the mounted state directory (a directory, not the socket, so a restarted stand-in stays
        reachable).
        """
        return [
            f"--network={network}",
            *(f"--add-host={name}:{API_ADDRESS}" for name in API_NAMES),
            f"--volume={self.state}:{HOST_MOUNT}",
            "--volume=/usr/bin/docker:/usr/bin/docker:ro",  # the CLI only; the daemon is the stand-in's
        ]

    def host_env(self, keys: bool = True) -> dict[str, str]:
        """What a pull on such a host needs besides ecrkit's work; the keys stand in for an instance
        role (without them, the helper asks IMDS: a host of an IMDS stand-in)."""
        return {
            "DOCKER_HOST": f"unix://{HOST_MOUNT}/{self.docker_socket.name}",
            "AWS_CA_BUNDLE": f"{HOST_MOUNT}/{self.ca.name}",
            **(ROLE_KEYS if keys else {}),
        }

    @property
    def api_endpoint(self) -> str:
        """The API by its address (which the certificate names too), for clients outside the namespace."""
        return f"https://{API_ADDRESS}"

    def controller_env(self) -> dict[str, str]:
        """Environment of an AWS client on the controller (playbooks/ecr.yml): fake keys and the CA;
        the endpoint is the client's own setting (api_endpoint)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(ROLE_KEYS, AWS_CA_BUNDLE=str(self.ca), AWS_REGION=REGION)
        return env

    def client(self, service: str) -> Any:
        """A boto3 client of the stand-in's API (moto), as the controller reaches it."""
        import boto3  # noqa: PLC0415 - only the callers that look at the account need it

        return boto3.client(
            service,
            endpoint_url=self.api_endpoint,
            region_name=REGION,
            verify=str(self.ca),
            aws_access_key_id=ROLE_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=ROLE_KEYS["AWS_SECRET_ACCESS_KEY"],
        )

    def imds(self, prefix: str | None = None) -> ImdsStandIn:
        """The IMDS stand-in whose credentials this stand-in's API checks (testbed.standin_imds.ImdsStandIn)."""
        from testbed.standin_imds import ImdsStandIn  # noqa: PLC0415 - it imports this module

        return ImdsStandIn(self.state / IMDS_STATE, prefix)

    def sso_login(self, home: Path, cache_key: str, start_url: str, sso_region: str, valid_for: int = 3600) -> Path:
        """What `aws sso login` leaves behind: a cached token valid for an hour (or `valid_for`
        seconds; a negative value gives a session that has expired), named by the sha1 of the
        sso-session's name (or, for a legacy profile, of the start URL)."""
        cache = home / ".aws" / "sso" / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + valid_for))
        token = {"accessToken": "stand-in-sso-token", "expiresAt": expires, "region": sso_region, "startUrl": start_url}
        path = cache / f"{hashlib.sha1(cache_key.encode()).hexdigest()}.json"  # the SDK names the cache so
        path.write_text(json.dumps(token))
        return path

    def sso_requests(self) -> list[dict[str, str]]:
        """The GetRoleCredentials calls so far: account_id and role_name of each."""
        path = self.state / "sso-requests"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    @property
    def registry_log(self) -> Path:
        """The registry's log: its access log lines (every request, whatever the log level) among the rest."""
        return self.state / "registry.log"

    def token_requests(self) -> int:
        path = self.state / "token-requests"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def refuse(self, error: Refusal | None) -> None:
        """Make GetAuthorizationToken fail with this AWS error code, or work again (None)."""
        path = self.state / "refuse"
        if error is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(error)

    def push_image(self, repository: str, tag: str) -> str:
        """Build a one-file image and push it through the helper; returns its reference."""
        reference = f"{REGISTRY_HOST}/{repository}:{tag}"
        home = self.state / "pusher"
        (home / ".docker").mkdir(parents=True, exist_ok=True)
        (home / ".docker" / "config.json").write_text(json.dumps({"credHelpers": {REGISTRY_HOST: "ecr-login"}}))
        layer = self.state / "layer"
        layer.mkdir(exist_ok=True)
        (layer / "hello.txt").write_text(f"{repository}:{tag}\n")
        env = self.client_env(home)
        steps = [
            ["sh", "-c", f'tar -C "{layer}" -c . | docker import - "{reference}"'],
            ["docker", "push", reference],
            ["docker", "rmi", reference],
        ]
        for argv in steps:
            done = self.run(argv, env)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
        return reference

    # -- lifecycle -----------------------------------------------------------------------

    def up(self) -> None:
        require_extra()  # here, not in the API server's log once it has failed to start
        if not Path("/etc/docker").is_dir():
            raise RuntimeError("stand-in: /etc/docker is missing; install Debian's docker.io (make deps)")
        self._take_lock()
        for address in (API_ADDRESS, REGISTRY_ADDRESS):
            if listening(address):
                raise RuntimeError(f"stand-in: {address}:443 is already in use (another stand-in? make standin-down)")
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o755)  # hosts mount it: every user there must read the CA (the keys stay 0600)
        self._write_files()
        holder = subprocess.Popen(
            [
                "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                f'mount --bind "{self.state}/hosts" /etc/hosts'
                f' && mount --bind "{self.state}/docker-etc" /etc/docker && exec sleep infinity',
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # a caller's pipe held open would never see EOF
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        self._record("holder", holder.pid)
        _wait(lambda: _mounted(holder.pid), "the mount namespace")
        self._start("api", [sys.executable, "-m", "testbed.standin", "api", str(self.state)])
        self._start("registry", ["docker-registry", "serve", str(self.state / "registry.yml")])
        self._start(
            "dockerd",
            [
                "dockerd", "--iptables=false", "--bridge=none",
                f"--data-root={self.state}/docker/data", f"--exec-root={self.state}/docker/exec",
                f"--pidfile={self.state}/docker/pid", f"--host=unix://{self.docker_socket}",
            ],
        )  # fmt: skip
        _wait(lambda: _tls_ready(API_ADDRESS, API_HOST, self.ca), "the ECR API")
        _wait(lambda: _tls_ready(REGISTRY_ADDRESS, REGISTRY_HOST, self.ca), "the registry")
        _wait(lambda: self.run(["docker", "version"]).returncode == 0, "dockerd", timeout=60)

    def down(self) -> None:
        for name in ("dockerd", "registry", "api", "holder"):
            pidfile = self.state / "pids" / name
            if not pidfile.exists():
                continue
            pid = int(pidfile.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            _wait(lambda pid=pid: not _alive(pid), f"{name} to stop", timeout=30)  # type: ignore[misc]
            pidfile.unlink()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _take_lock(self) -> None:
        UP_LOCK.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(UP_LOCK, "w")  # noqa: SIM115 - held until down()
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"stand-in: waiting for another stand-in to stop ({UP_LOCK})", file=sys.stderr, flush=True)
            fcntl.flock(self._lock, fcntl.LOCK_EX)

    def _start(self, name: str, argv: list[str]) -> None:
        log = open(self.state / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        process = subprocess.Popen(
            ["nsenter", f"--target={self._holder_pid()}", "--mount", "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # `python -m testbed.standin api` from any directory: the test bed is imported from the checkout
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        self._record(name, process.pid)

    def _record(self, name: str, pid: int) -> None:
        (self.state / "pids").mkdir(exist_ok=True)
        (self.state / "pids" / name).write_text(str(pid))

    def _holder_pid(self) -> int:
        return int((self.state / "pids" / "holder").read_text())

    def _write_files(self) -> None:
        import bcrypt  # noqa: PLC0415 - paramiko's dependency, needed only when a stand-in starts

        state = self.state
        _make_certificates(state)
        (state / "hosts").write_text(
            f"127.0.0.1 localhost\n{API_ADDRESS} {' '.join(API_NAMES)}\n{REGISTRY_ADDRESS} {REGISTRY_HOST}\n"
            f"{NOWHERE} {' '.join(DOCKER_HUB_NAMES)}\n"
        )
        certs = state / "docker-etc" / "certs.d" / REGISTRY_HOST
        certs.mkdir(parents=True, exist_ok=True)
        (certs / "ca.crt").write_bytes(self.ca.read_bytes())
        hashed = bcrypt.hashpw(TOKEN_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        (state / "htpasswd").write_text(f"AWS:{hashed}\n")
        (state / "registry.yml").write_text(
            json.dumps(
                {
                    "version": 0.1,
                    "log": {"level": "warn"},
                    "storage": {"filesystem": {"rootdirectory": str(state / "registry-data")}},
                    "http": {
                        "addr": f"{REGISTRY_ADDRESS}:443",
                        "tls": {"certificate": str(state / "server.crt"), "key": str(state / "server.key")},
                    },
                    "auth": {"htpasswd": {"realm": "ecr-stand-in", "path": str(state / "htpasswd")}},
                }
            )
        )


def _make_certificates(state: Path) -> None:
    """A throwaway CA and one server certificate for the ECR names (openssl, as on any host);
    kept while they name the same hosts."""
    san = (
        f"subjectAltName={','.join(f'DNS:{name}' for name in (*API_NAMES, REGISTRY_HOST))},IP:{API_ADDRESS}\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    if (state / "ca.crt").exists() and (state / "san.cnf").exists() and (state / "san.cnf").read_text() == san:
        return
    (state / "san.cnf").write_text(san)
    commands = [
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3 -subj '/CN=ecrkit stand-in CA'",
        "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=ecrkit stand-in'",
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 3"
        " -extfile san.cnf",
    ]
    for command in commands:
        subprocess.run(command, shell=True, cwd=state, check=True, capture_output=True)


def _wait(ready: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"stand-in: {what} not ready after {timeout:.0f}s")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def _mounted(pid: int) -> bool:
    try:
        return " /etc/docker " in Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return False


def listening(address: str) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((address, 443)) == 0


def _tls_ready(address: str, hostname: str, ca: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with socket.create_connection((address, 443), timeout=1) as raw:
            context.wrap_socket(raw, server_hostname=hostname).close()
            return True
    except OSError:
        return False


def api_app(state: Path) -> Callable[..., Iterable[bytes]]:
    """moto's server app, with realistic token expiry, a request count and refusals on demand."""
    moto = moto_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        refused = _imds_refusal(state, environ)
        if refused is not None:
            return _refuse(environ, start_response, "ExpiredTokenException", refused)
        if environ.get("PATH_INFO") == "/federation/credentials":
            time.sleep(ANSWER_DELAY)
            return _role_credentials(state, environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target not in (GET_TOKEN, GET_PUBLIC_TOKEN):
            return moto(environ, start_response)
        time.sleep(ANSWER_DELAY)  # what the helper asks: not faster than a network answers
        counter_file = "token-requests" if target == GET_TOKEN else "public-token-requests"
        with open(state / counter_file, "a") as counter:
            counter.write(f"{time.time()}\n")
        refusal = state / "refuse"
        json_type = [("Content-Type", "application/x-amz-json-1.1")]
        if refusal.exists():
            code = refusal.read_text().strip()
            body = json.dumps({"__type": code, "message": f"the stand-in refuses: {code}"}).encode()
            start_response("400 Bad Request", json_type)
            return [body]
        if target == GET_PUBLIC_TOKEN:
            token = base64.b64encode(f"AWS:{TOKEN_PASSWORD}".encode()).decode()
            data = {"authorizationData": {"authorizationToken": token, "expiresAt": time.time() + TOKEN_LIFETIME}}
            start_response("200 OK", json_type)
            return [json.dumps(data).encode()]
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured.update(status=status, headers=headers)
            return lambda data: None

        data = json.loads(b"".join(moto(environ, capture)))
        for entry in data.get("authorizationData", []):
            entry["expiresAt"] = time.time() + TOKEN_LIFETIME
        body = json.dumps(data).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return app


def _imds_refusal(state: Path, environ: dict[str, Any]) -> str | None:
    """Why keys that the IMDS stand-in issued (testbed.standin_imds) are refused: expired, or
    never issued; None for other keys (moto accepts any)."""
    from testbed.standin_imds import ISSUED_KEY_PREFIX, credential_refusal  # noqa: PLC0415 - it imports this module

    match = re.search(r"Credential=([A-Z0-9]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    if match is None or not match.group(1).startswith(ISSUED_KEY_PREFIX):
        return None
    key = match.group(1)
    refused = credential_refusal(state / IMDS_STATE, key, environ.get("HTTP_X_AMZ_SECURITY_TOKEN", ""))
    with open(state / IMDS_STATE / "keys-used", "a") as used:  # which keys callers came with, and the answer
        used.write(f"{key} {'refused' if refused else 'accepted'}\n")
    return refused


def _refuse(environ: dict[str, Any], start_response: Callable[..., Any], code: str, message: str) -> Iterable[bytes]:
    """An AWS error in the request's protocol: JSON for ECR's, XML for the query APIs (STS)."""
    if "json" in environ.get("CONTENT_TYPE", ""):
        body = json.dumps({"__type": code, "message": message}).encode()
        content_type = "application/x-amz-json-1.1"
    else:
        body = (
            f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>stand-in</RequestId></ErrorResponse>"
        ).encode()
        content_type = "text/xml"
    start_response("400 Bad Request", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _role_credentials(state: Path, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """IAM Identity Center's GetRoleCredentials (moto lacks the portal): keys for the account and
    role asked, which moto accepts like any. The SDK sends the cached token only when it has a
    valid one (werkzeug drops the x-amz-sso_bearer_token header, so it is not checked here)."""
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    with open(state / "sso-requests", "a") as log:
        log.write(json.dumps({key: query.get(key, [""])[0] for key in ("account_id", "role_name")}) + "\n")
    credentials = {
        "accessKeyId": "ASIASTANDINSSO000000",
        "secretAccessKey": "stand-in-sso-secret",
        "sessionToken": "stand-in-sso-session",
        "expiration": int((time.time() + 3600) * 1000),
    }
    body = json.dumps({"roleCredentials": credentials}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down", "api", "http"):
        print("usage: python -m testbed.standin up|down|api STATE_DIR | http PORT", file=sys.stderr)
        return 2
    if argv[0] != "down":
        try:
            require_extra()
        except MissingExtra as exc:
            print(f"testbed.standin: {exc}", file=sys.stderr)
            return 1
    if argv[0] == "http":  # moto (+ the ECR APIs it lacks) over plain HTTP, for tests using AWS_ENDPOINT_URL
        from werkzeug.serving import run_simple  # noqa: PLC0415 - comes with moto[server]

        run_simple(API_ADDRESS, int(argv[1]), moto_app(), threaded=True)
        return 0
    command, state = argv[0], Path(argv[1]).resolve()
    if command == "api":
        from werkzeug.serving import run_simple  # noqa: PLC0415 - comes with moto[server]

        ssl_context = (str(state / "server.crt"), str(state / "server.key"))
        run_simple(API_ADDRESS, 443, api_app(state), threaded=True, ssl_context=ssl_context)
        return 0
    stand_in = StandIn(state)
    if command == "up":
        stand_in.up()
        print(f"stand-in up: {API_HOST} and {REGISTRY_HOST} in the mount namespace of pid {stand_in._holder_pid()}")
        print(f"docker: DOCKER_HOST=unix://{stand_in.docker_socket}; CA: {stand_in.ca}")
    else:
        stand_in.down()
        print("stand-in down")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
