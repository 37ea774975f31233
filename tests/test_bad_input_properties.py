"""Property: no input makes an `ecrkit` command print a traceback.

Each file-taking command gets random and mutated files (JSON, TOML, INI, YAML, arbitrary bytes)
holding a planted secret, and random option values. Whatever they are: the exit code is 0, 1 or
2, nothing escapes `main()`, the file is unchanged (unless `--in-place` succeeded), a refusal
prints nothing on stdout, and the secret never appears in a message. The CLI runs in-process, so
hundreds of examples take seconds.
"""

from __future__ import annotations

import io
import json
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import tomlkit
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecrkit import cli, mirror
from ecrkit.errors import InputError
from ecrkit.registry import RegistryError
from ecrkit.validate import ssh_target

SECRET = "planted-s3cret-4a7f"
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
SSO = ["--start-url=https://d-1234567890.awsapps.com/start", "--sso-region=us-east-1", "--role-name=ECRPull"]
SEEDS = {
    "json": json.dumps({"auths": {"ghcr.io": {"auth": SECRET}}, "credHelpers": {"gcr.io": "gcloud"}}, indent="\t"),
    "toml": 'concurrent = 2\n\n[[runners]]\n  name = "a"\n  url = "https://gitlab.example.com"\n'
    f'  token = "{SECRET}"\n  executor = "docker+machine"\n  environment = ["A=1"]\n'
    '  [runners.machine]\n    MachineOptions = ["amazonec2-region=us-east-1"]\n',
    "ini": f"[default]\nregion = us-east-1\n\n[profile ecr]\naws_secret_access_key = {SECRET}\n",
    "yaml": f"target: {ECR}\nprefix: mirror\n# token: {SECRET}\nimages:\n  - source: alpine\n    tags: ['3.20']\n",
}
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
trees = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4))
keys = st.sampled_from(["name", "token", "executor", "environment", "url", "credHelpers", "auths", "target", "images"])


@st.composite
def mutated(draw: st.DrawFn, seed: str) -> bytes:
    """The seed with a few byte-level edits: deletions, insertions, replacements, duplicated lines."""
    data = bytearray(seed.encode())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "truncate"]))
        if operation == "delete":
            del data[at : at + draw(st.integers(1, 12))]
        elif operation == "insert":
            data[at:at] = draw(
                st.binary(min_size=1, max_size=6) | st.sampled_from([b"[", b"]", b'"', b"=", b"\n", b":"])
            )
        elif operation == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif operation == "duplicate":
            lines = data.split(b"\n")
            line = draw(st.integers(0, len(lines) - 1))
            lines.insert(line, lines[line])
            data = bytearray(b"\n".join(lines))
        else:
            data = data[:at]
    return bytes(data)


def _toml(document: dict[str, object]) -> str:
    try:
        return tomlkit.dumps(document)
    except (TypeError, ValueError, tomlkit.exceptions.TOMLKitError):
        return SEEDS["toml"]


@st.composite
def generated(draw: st.DrawFn, kind: str) -> str:
    """A document of the format built from random values, with the secret where a secret goes."""
    values = st.dictionaries(keys | st.text(min_size=1, max_size=8), trees, max_size=5)
    if kind == "json":
        document = draw(values | trees)
        if isinstance(document, dict):
            document["auths"] = {"r.io": {"auth": SECRET}}
        return json.dumps(document)
    if kind == "toml":
        no_none = st.recursive(
            st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=8), c, max_size=3),
        )
        runners = draw(st.lists(st.dictionaries(keys, no_none, max_size=5), min_size=1, max_size=3))
        for runner in runners:
            runner["token"] = SECRET
        return _toml({"runners": runners})
    if kind == "ini":
        sections = draw(
            st.dictionaries(st.text(max_size=12), st.dictionaries(st.text(max_size=8), st.text(max_size=12)))
        )
        lines = [f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in body.items()) for name, body in sections.items()]
        return "".join(lines) + f"[profile x]\naws_session_token = {SECRET}\n"
    document = draw(values)
    document["password"] = SECRET
    return yaml.safe_dump(document)


def contents(kind: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        mutated(SEEDS[kind]),
        generated(kind).map(str.encode),
        generated(kind).map(lambda text: text.encode("utf-16")),
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
    )


# Option values: mostly near-valid, so that they get past argparse and reach ecrkit's checks.
registries = st.one_of(
    st.just(ECR),
    st.just("public.ecr.aws"),
    st.text(max_size=60),
    st.builds(lambda at, ch: ECR[:at] + ch + ECR[at + 1 :], st.integers(0, len(ECR) - 1), st.characters()),
)
texts = st.text(max_size=30)


def mostly(valid: object, other: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """`valid` about three times in four, so that the file itself gets parsed, else `other`."""
    return st.one_of(st.just(valid), st.just(valid), st.just(valid), other)


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse refusing an option
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def check(argv_before_path: list[str], data: bytes, argv_after: list[str], *, in_place: bool = False) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "input"
        path.write_bytes(data)
        with mock.patch.object(mirror, "plan", side_effect=RegistryError("offline: no registry is asked")):
            code, out, err = run([*argv_before_path, str(path), *argv_after])
        assert code in (0, 1, 2), (code, err)
        assert "Traceback" not in err
        assert SECRET not in err
        if code != 0:
            assert out == "", "a refusal printed output"
        if not (in_place and code == 0):
            assert path.read_bytes() == data, "the input file changed"
        leftovers = [p.name for p in Path(directory).iterdir() if p.name != "input"]
        assert leftovers == [], "a temporary file was left behind"


@EXAMPLES
@given(data=contents("json"), registry=mostly(ECR, registries), public=st.booleans())
def test_render_docker_config_merge(data: bytes, registry: str, public: bool) -> None:
    check(["render", "docker-config", f"--registry={registry}", *(["--public"] * public), "--merge"], data, [])


@EXAMPLES
@given(
    data=contents("toml"),
    registry=mostly(ECR, registries),
    runner=mostly("", st.sampled_from(["a"]) | texts),
    hop_limit=mostly(2, st.integers(-2, 70)),
    profile=mostly("", st.sampled_from(["ci-jobs"]) | texts),
    userdata=mostly("", st.sampled_from(["/etc/u.sh"]) | texts),
    in_place=st.booleans(),
)
def test_render_runner_config(  # noqa: PLR0917 - one argument per option drawn
    data: bytes, registry: str, runner: str, hop_limit: int, profile: str, userdata: str, in_place: bool
) -> None:
    options = [f"--registry={registry}", f"--hop-limit={hop_limit}", f"--instance-profile={profile}"]
    options += [f"--userdata={userdata}", *([f"--runner={runner}"] if runner else []), *(["--in-place"] * in_place)]
    check(["render", "runner-config", *options, "--config"], data, [], in_place=in_place)


@EXAMPLES
@given(
    data=contents("ini"),
    registry=mostly(ECR, registries),
    region=mostly("", st.sampled_from(["eu-west-1"]) | texts),
    account=mostly("", st.sampled_from(["123456789012"]) | texts),
    form=st.sampled_from(["sso-session", "legacy"]),
)
def test_render_aws_config_merge(data: bytes, registry: str, region: str, account: str, form: str) -> None:
    options = [*SSO, f"--registry={registry}", f"--region={region}", f"--account-id={account}", f"--form={form}"]
    check(["render", "aws-config", *options, "--merge"], data, [])


@EXAMPLES
@given(data=contents("yaml"), dry_run=st.booleans())
def test_mirror_config(data: bytes, dry_run: bool) -> None:
    check(["mirror", "--config"], data, ["--dry-run"] * dry_run)


numbers = st.floats() | st.integers(-10, 10)


@EXAMPLES
@given(
    command=st.sampled_from(["marathon-app", "userdata", "marathon-installer", "iam-policy", "registries-conf"]),
    number=numbers,
    value=texts | registries,
    other=texts | st.sampled_from(["docker-hub", "docker.io", "https://m.example.com/h", "team/app"]),
)
def test_option_values_of_the_other_commands(command: str, number: float, value: str, other: str) -> None:
    argv = {
        "marathon-app": ["--id=/a", f"--image={value}", f"--cpus={number}", f"--mem={other}"],
        "userdata": [f"--registry={value}", f"--url={other}", f"--sha256={value}"],
        "marathon-installer": [f"--sha256={value}", f"--release-base-url={other}", f"--instances={number}"],
        "iam-policy": ["--for=agent", f"--registry={value}", *([f"--repository={other}"] if other else [])],
        "registries-conf": [f"--registry={value}", f"--cache-prefix={other}", f"--upstream={value}"],
    }[command]
    code, out, err = run(["render", command, *argv])
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err
    assert out == "" if code else out
    if code == 0 and command in ("marathon-app", "marathon-installer", "iam-policy"):
        json.loads(out, parse_constant=_not_json)  # NaN and Infinity are not JSON


def _not_json(constant: str) -> None:
    raise AssertionError(f"{constant} in JSON output")


@EXAMPLES
@given(
    image=texts | st.sampled_from(["alpine:3.20", "quay.io/a/b@sha256:" + "a" * 64]),
    via=mostly(f"{ECR}/hub", texts),
    upstream=mostly("docker.io", texts),
)
def test_rewrite_image_values(image: str, via: str, upstream: str) -> None:
    code, out, err = run(["rewrite-image", f"--via={via}", f"--upstream={upstream}", "--", image])
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err
    assert out == "" if code else out


@EXAMPLES
@given(spec=st.text(max_size=30) | st.builds(lambda port: f"root@host:{port}", st.integers(-5, 70000)))
def test_validate_hosts_are_parsed_or_refused(spec: str) -> None:
    """`validate HOST`, without connecting: a port outside 1 to 65535 is refused, never tried."""
    try:
        target = ssh_target(spec)
    except InputError as exc:
        assert "HOST" in str(exc)
    else:
        assert target.port is None or 1 <= target.port <= 65535  # None: ssh_config's Port
