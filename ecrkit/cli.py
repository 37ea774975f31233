"""`ecrkit ...`: every renderer and the validator, for users without Ansible. Only this module prints."""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ecrkit import __version__, constants, files, helper, images, mirror
from ecrkit.errors import EcrkitError, FileFormatError, InputError, PathError
from ecrkit.registry import Registry, RegistryError
from ecrkit.settings import (
    ECR_PRIVATE_HOST,
    SSO_PROFILE_FORMS,
    CredentialRule,
    private_registry,
    validate_absolute_path,
)


def _lazy(name: str) -> ModuleType:
    """The module, loaded at its first use: each command imports only what it runs (a mirror run that
    finds nothing to copy never loads the AWS SDK, paramiko or the renderers)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None, name
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    import rich.console
    import rich.progress

    from ecrkit import aws, ecr_account, hoststate, plans, validate
    from ecrkit.renderers import (
        aws_config,
        docker_config,
        docker_tar,
        iam_policy,
        marathon,
        registries_conf,
        runner_config,
        userdata,
    )
else:
    aws, ecr_account, hoststate, plans, validate = (
        _lazy(f"ecrkit.{name}") for name in ("aws", "ecr_account", "hoststate", "plans", "validate")
    )
    RENDERERS = ("aws_config", "docker_config", "docker_tar", "iam_policy", "marathon", "registries_conf",
                 "runner_config", "userdata")  # fmt: skip
    aws_config, docker_config, docker_tar, iam_policy, marathon, registries_conf, runner_config, userdata = (
        _lazy(f"ecrkit.renderers.{name}") for name in RENDERERS
    )


def Console(**options: Any) -> rich.console.Console:
    import rich.console  # noqa: PLC0415

    return rich.console.Console(**options)


def Progress(**options: Any) -> rich.progress.Progress:
    import rich.progress  # noqa: PLC0415

    return rich.progress.Progress(**options)


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def integer(text: str) -> int:
    """argparse's `int` takes other scripts' digits (fullwidth ones, say); options take ASCII, as patterns do."""
    if not (text.isascii() and text.removeprefix("-").isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def number(text: str) -> float:
    """A decimal number in ASCII; `nan` and `inf` pass here and are refused with the option's rules."""
    try:
        if not text.isascii():
            raise ValueError(text)
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _add_rule_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        action="append",
        default=[],
        metavar="R",
        help="registry hostname to name with credHelpers (repeatable); none: credsStore",
    )
    parser.add_argument("--public", action="store_true", help="add public.ecr.aws to credHelpers")
    parser.add_argument(
        "--creds-store",
        action="store_true",
        help="write credsStore too, even when registries are named (needs AWS_REGION where it is used)",
    )


# The options spelled otherwise than `--` + key with dashes, for the plans' errors.
OPTION_NAMES = {"registries": "--registry", "runners": "--runner", "userdata_path": "--userdata"}


def _rule_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"registries": args.registry, "public": args.public, "creds_store": args.creds_store}


def _rule(args: argparse.Namespace) -> CredentialRule:
    return plans.credential_rule(_rule_options(args), plans.options_of(**OPTION_NAMES))


def _read_merge(path: str | None) -> str | None:
    """The --merge file's text; None when none is given, or it does not exist yet (said on stderr,
    so that a mistyped path does not pass unnoticed)."""
    if not path:
        return None
    text = files.read_text(path, "--merge", missing_ok=True)
    if text is None:
        print(f"ecrkit: note: --merge {path} does not exist; merging into an empty file", file=sys.stderr)
    return text


def _render_docker_config(args: argparse.Namespace) -> int:
    sys.stdout.write(docker_config.render(_read_merge(args.merge), _rule(args), path=args.merge or "<new>"))
    return EXIT_OK


def _render_aws_config(args: argparse.Namespace) -> int:
    profile = aws_config.SsoProfile.build(
        profile=args.profile,
        session=args.session,
        start_url=args.start_url,
        sso_region=args.sso_region,
        account_id=args.account_id,
        role_name=args.role_name,
        region=args.region,
        form=args.form,
        registries=args.registry,
        prefix="--",
    )
    sys.stdout.write(aws_config.merge(_read_merge(args.merge), profile, args.merge or "<new>"))
    return EXIT_OK


def _render_runner_config(args: argparse.Namespace) -> int:
    raw = files.read_bytes(args.config, "--config") or b""
    existing = files.decode(raw, args.config, "--config")
    options = {
        **_rule_options(args),
        "config_path": args.config,
        "runners": args.runner,
        "docker_volumes": args.docker_volumes,
        "helper_path": validate_absolute_path(args.helper_path, "--helper-path"),
        "instance_profile": args.instance_profile,
        "userdata_path": args.userdata,
        "hop_limit": args.hop_limit,
    }
    # The role's plan (gitlab_runner_ecr), without the service environment and the userdata file.
    plan = plans.runner_plan(hoststate.read_facts({args.config: existing}), options, plans.options_of(**OPTION_NAMES))
    merged = plan["files"]["config_toml"]["content"]
    for typo in plan["typos"]:
        print(f"ecrkit: warning: {typo}", file=sys.stderr)
    if not args.in_place:
        sys.stdout.write(merged)
    elif merged == existing:
        print(f"{args.config}: unchanged", file=sys.stderr)
    else:
        # GitLab Runner may rewrite its config.toml meanwhile: its write is kept, never reverted.
        files.write_atomic(args.config, merged, mode=0o600, source="--config", expected_sha256=files.sha256_of(raw))
        print(f"{args.config}: updated", file=sys.stderr)
    return EXIT_OK


def _render_userdata(args: argparse.Namespace) -> int:
    if args.with_part and args.format != "mime":
        raise InputError("--with-part", args.with_part[0], "--format mime (other parts combine only in MIME)")
    rule = _rule(args)

    def script(form: str) -> str:  # what gitlab_runner_ecr writes for job hosts, with the same inputs
        return plans.job_host_userdata(
            rule,
            version=args.version,
            release_base_url=args.release_base_url,
            url=args.url,
            sha256=args.sha256,
            install_dir=args.install_dir,
            form=form,  # type: ignore[arg-type]
            name=plans.options_of(),
        )

    if not args.with_part:
        sys.stdout.write(script(args.format))
        return EXIT_OK
    parts = [(userdata.MIME_PART_NAME, script("shell"))]
    for path in args.with_part:
        try:
            with open(path) as handle:
                parts.append((os.path.basename(path), handle.read()))
        except OSError as exc:
            raise InputError("--with-part", path, f"a readable file ({exc.strerror})") from None
    sys.stdout.write(userdata.mime(parts))
    return EXIT_OK


def _render_docker_tar(args: argparse.Namespace) -> int:
    data = docker_tar.render(_rule(args))
    unchanged = files.read_bytes(args.output, "--output", missing_ok=True) == data
    if not unchanged:
        files.write_atomic_bytes(args.output, data, mode=0o644, source="--output")
    print(f"{args.output}: {'unchanged' if unchanged else 'written'}")
    return EXIT_OK


def _render_marathon_app(args: argparse.Namespace) -> int:
    definition = marathon.app(
        args.id,
        args.image,
        cpus=args.cpus,
        mem=args.mem,
        instances=args.instances,
        force_pull=args.force_pull,
        uri=args.uri,
        cmd=args.cmd,
    )
    print(json.dumps(definition, indent=2))
    return EXIT_OK


def _render_marathon_installer(args: argparse.Namespace) -> int:
    url = _binary_url(args, args.arch)
    definition = marathon.installer(url, args.sha256, install_dir=args.install_dir, instances=args.instances)
    print(json.dumps(definition, indent=2))
    return EXIT_OK


def _render_iam_policy(args: argparse.Namespace) -> int:
    print(json.dumps(iam_policy.render(args.context, args.registry, tuple(args.repository)), indent=2))
    return EXIT_OK


def _render_replication_policy(args: argparse.Namespace) -> int:
    account, region, _ = private_registry(args.registry, "--registry")
    print(json.dumps(ecr_account.replication_policy(args.source_account, region, account), indent=2))
    return 0


def _render_registries_conf(args: argparse.Namespace) -> int:
    sys.stdout.write(registries_conf.render(args.registry, args.cache_prefix, args.upstream))
    return EXIT_OK


def _rewrite_image(args: argparse.Namespace) -> int:
    print(images.rewrite(args.image, args.via, args.upstream))
    return EXIT_OK


def _mirror(args: argparse.Namespace) -> int:
    config = mirror.load(args.config, "--config")
    account, region, _ = private_registry(config["target"], f"{args.config}: target")
    shard = mirror.shard_from(args.shard, os.environ)
    plain_http = set(config.get("plain_http", []))
    registries: dict[str, Registry] = {}
    lock = threading.Lock()

    def registry(host: str) -> Registry:
        """One client per registry for the whole run: one helper call (one token), one connection pool."""
        with lock:
            if host not in registries:
                login = mirror.helper_credentials(host) if ECR_PRIVATE_HOST.match(host) else None
                registries[host] = Registry(host, credentials=login, plain_http=host in plain_http,
                                            connections=args.jobs)  # fmt: skip
            return registries[host]

    try:
        planned = mirror.plan(config, lambda host, repository: registry(host).tags(repository), shard)
    except RegistryError as exc:
        raise EcrkitError(f"listing tags: {exc}") from None

    def ensure(names: Iterable[str], dry_run: bool) -> list[str]:  # the AWS SDK only when something is to be copied
        import botocore.session  # noqa: PLC0415 - boto3's client is botocore's; boto3 adds s3transfer (3 MiB)

        ecr = botocore.session.get_session().create_client("ecr", region_name=region)
        return mirror.ensure_repositories(ecr, account, names, dry_run)

    # A progress bar only where rich would draw one (a terminal, or one forced by the environment): rich
    # is a tenth of a run that finds nothing to copy, and on a pipe, a file or the journal its transient
    # bar shows nothing.
    with contextlib.ExitStack() as stack:
        advance: Callable[[mirror.Result], None] = lambda result: None  # noqa: E731
        if not args.json and (
            sys.stderr.isatty() or os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1"
        ):
            progress = stack.enter_context(Progress(console=Console(stderr=True), transient=True))
            task = progress.add_task("mirroring", total=len(planned.copies))
            advance = lambda result: progress.advance(task)  # noqa: E731
        outcome = mirror.run(
            planned,
            dry_run=args.dry_run,
            jobs=args.jobs,
            registry=registry,
            ensure_repositories=ensure,
            advance=advance,
        )
    source_bytes = sum(client.bytes_read for host, client in registries.items() if host != planned.target)
    if args.json:
        print(outcome.as_json(source_bytes))
    else:
        for result in outcome.results:
            print(f"{result.status:<12} {result.what}  {result.detail}".rstrip())
        blobs = outcome.blobs
        print(f"blobs: {blobs.copied} copied ({blobs.copied_bytes} bytes), {blobs.mounted} mounted, "
              f"{blobs.present} present; shard {shard[0]}/{shard[1]}")  # fmt: skip
        print(outcome.summary())
    return EXIT_FAILED if outcome.failed else EXIT_OK


def _fetch(args: argparse.Namespace) -> int:
    changed = aws.download_verified(args.source, args.sha256, args.output)
    print(f"{args.output}: {'downloaded and verified' if changed else 'already present with this sha256'}")
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    targets = validate.targets_from_arguments(args.hosts, args.inventory, args.registry, args.service, args.user)
    if args.junit:
        files.check_writable(args.junit, "--junit")  # before any host is probed
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"probing {len(targets)} host(s)", total=len(targets))
        reports = validate.validate_all(targets, lambda _: progress.advance(task))
    if args.junit:
        files.write_atomic(args.junit, validate.to_junit(reports), mode=0o644, source="--junit")
    if args.json:
        print(validate.to_json(reports))
    else:
        validate.print_report(Console(), reports)
    return EXIT_OK if all(r.passed for r in reports) else EXIT_FAILED


def _add_binary_arguments(
    parser: argparse.ArgumentParser, *, install_dir: str, sha256_help: str, pinned: bool = False
) -> None:
    """Where a host gets the helper binary: a release (or --url), its sha256, its directory."""
    parser.add_argument("--version", default=constants.HELPER_VERSION, help="release to install (X.Y.Z)")
    if pinned:  # an app definition, not a script on the host: it names one architecture and one sha256
        parser.add_argument("--arch", choices=["amd64", "arm64"], default="amd64")
    parser.add_argument(
        "--release-base-url", default=constants.RELEASE_BASE_URL, help="the official bucket, or a mirror"
    )
    parser.add_argument(
        "--url", default="", help="the binary's http(s) URL instead of a release (@ARCH@: amd64 or arm64)"
    )
    parser.add_argument("--sha256", required=pinned, default="", help=sha256_help)
    parser.add_argument("--install-dir", default=install_dir, help="where the helper goes on the host")


def _binary_url(args: argparse.Namespace, arch: str) -> str:
    return str(args.url or helper.release_url(args.version, arch, args.release_base_url, prefix="--"))


def _add_gitlab_runner_parsers(kinds: Any) -> None:
    """render runner-config and render userdata: GitLab Runner managers and their job hosts."""
    runner = kinds.add_parser(
        "runner-config",
        help="GitLab Runner's config.toml with ecrkit's keys merged in",
        description="Print config.toml with DOCKER_AUTH_CONFIG (and, for docker+machine runners, the amazonec2 "
        "MachineOptions) merged in as TOML: tokens, comments and unknown keys are kept. The file is modified only "
        "with --in-place (atomically, mode 0600).",
    )
    _add_rule_arguments(runner)
    runner.add_argument("--config", required=True, metavar="PATH", help="the runner's config.toml")
    runner.add_argument(
        "--runner", action="append", default=[], metavar="NAME", help="runner to manage (repeatable; default all)"
    )
    runner.add_argument("--in-place", action="store_true", help="write the file instead of printing it")
    runner.add_argument(
        "--docker-volumes", action="store_true", help="mount the Docker socket, /root/.docker and the helper into jobs"
    )
    runner.add_argument(
        "--helper-path",
        default=f"{constants.INSTALL_DIR}/{constants.HELPER_BINARY}",
        help="the helper's path on job hosts",
    )
    runner.add_argument(
        "--instance-profile", default="", metavar="NAME", help="amazonec2-iam-instance-profile for job hosts"
    )
    runner.add_argument(
        "--userdata", default="", metavar="PATH", help="amazonec2-userdata: the userdata file on the manager"
    )
    runner.add_argument(
        "--hop-limit",
        type=integer,
        default=2,
        help="IMDSv2 hop limit for job hosts (2 lets job containers reach the role)",
    )
    runner.set_defaults(handler=_render_runner_config)

    job_host = kinds.add_parser(
        "userdata",
        help="userdata for job hosts: install the helper and merge it into /root/.docker/config.json",
        description="Print userdata (a bash script, or #cloud-config that runs it) that installs the helper, "
        "checking its sha256 before moving it into place, and merges it into /root/.docker/config.json. "
        "Running it again changes nothing.",
    )
    _add_rule_arguments(job_host)
    job_host.add_argument(
        "--format",
        choices=userdata.FORMATS,
        default="shell",
        help="shell script, #cloud-config, or MIME multi-part (for launch templates and other parts)",
    )
    job_host.add_argument(
        "--with-part",
        action="append",
        default=[],
        metavar="FILE",
        help="another userdata part to combine after ecrkit's (with --format mime; typed by its first line)",
    )
    _add_binary_arguments(
        job_host,
        install_dir="/usr/local/bin",
        sha256_help="expected sha256 (default: the URL's .sha256 file, read on the host)",
    )
    job_host.set_defaults(handler=_render_userdata)


def _add_marathon_parsers(kinds: Any) -> None:
    """render docker-tar, marathon-app and marathon-installer: Mesos/Marathon agents."""
    tar = kinds.add_parser(
        "docker-tar",
        help="the docker.tar.gz a Marathon app fetches (.docker/config.json naming the helper)",
        description="Write a reproducible docker.tar.gz holding only .docker/config.json; an unchanged archive "
        "is not rewritten.",
    )
    _add_rule_arguments(tar)
    tar.add_argument("-o", "--output", required=True, help="where to write it, e.g. /etc/docker.tar.gz")
    tar.set_defaults(handler=_render_docker_tar)

    marathon_app = kinds.add_parser(
        "marathon-app",
        help="a Marathon app whose docker pull authenticates through the fetched docker.tar.gz",
        description="Print a Marathon app definition (Docker containerizer) that fetches docker.tar.gz, "
        "validated against Marathon's app schema.",
    )
    marathon_app.add_argument("--id", required=True, help="app id, e.g. /team/app")
    marathon_app.add_argument("--image", required=True, help="image reference in ECR")
    marathon_app.add_argument("--cpus", type=number, default=0.1)
    marathon_app.add_argument("--mem", type=number, default=128, help="MiB")
    marathon_app.add_argument("--instances", type=integer, default=1)
    marathon_app.add_argument("--force-pull", action="store_true", help="pull on every launch (forcePullImage)")
    marathon_app.add_argument("--uri", default=marathon.DOCKER_TAR_URI, help="where agents have the archive")
    marathon_app.add_argument("--cmd", default="", help="command to run (default: the image's)")
    marathon_app.set_defaults(handler=_render_marathon_app)

    installer = kinds.add_parser(
        "marathon-installer",
        help="a Marathon app that installs the pinned helper on every agent (one task per agent)",
        description="Print a Marathon app with constraint hostname UNIQUE that fetches the helper, checks its "
        "sha256, and installs it into a directory DC/OS upgrades keep. Scale --instances to the agent count.",
    )
    _add_binary_arguments(
        installer,
        install_dir="/usr/bin",
        sha256_help="the binary's sha256 (from the release's .sha256)",
        pinned=True,
    )
    installer.add_argument("--instances", type=integer, default=1, help="the number of agents")
    installer.set_defaults(handler=_render_marathon_installer)


def _add_ecr_parsers(kinds: Any) -> None:
    """render iam-policy and registries-conf: the ECR side and redirects."""
    policy = kinds.add_parser(
        "iam-policy",
        help="a least-privilege IAM policy for a context that pulls from ECR",
        description="Print an IAM policy document: ecr:GetAuthorizationToken (and admin's registry-level actions, "
        "which take no resource type) on *, the context's repository actions on the named repositories (all "
        "repositories when none is named); no wildcard actions.",
    )
    policy.add_argument("--for", dest="context", required=True, choices=sorted(iam_policy.CONTEXTS))
    policy.add_argument("--registry", default="", help="the registry the repositories live in")
    policy.add_argument(
        "--repository", action="append", default=[], metavar="NAME", help="repeatable; NAME/* for a prefix"
    )
    policy.set_defaults(handler=_render_iam_policy)

    replication = kinds.add_parser(
        "replication-policy",
        help="the registry policy a replication destination needs (ecr:ReplicateImage, ecr:CreateRepository)",
        description="Print the registry permissions policy to put in the destination registry (put-registry-policy) "
        "so that the source accounts can replicate into it; ecr_account applies it for accounts of the inventory.",
    )
    replication.add_argument(
        "--registry", required=True, help="the destination registry, e.g. ACCOUNT.dkr.ecr.REGION..."
    )
    replication.add_argument(
        "--source-account", action="append", default=[], metavar="ID", help="repeatable; an account that replicates"
    )
    replication.set_defaults(handler=_render_replication_policy)

    conf = kinds.add_parser(
        "registries-conf",
        help="a registries.conf drop-in mirroring docker.io through a pull-through cache (podman, CRI-O)",
    )
    conf.add_argument("--registry", required=True, help="the ECR registry of the cache")
    conf.add_argument(
        "--cache-prefix", required=True, help="the pull-through rule's repository prefix, e.g. docker-hub"
    )
    conf.add_argument("--upstream", default=images.DOCKER_HUB, help="the registry to mirror (default docker.io)")
    conf.set_defaults(handler=_render_registries_conf)


def _add_aws_config_parser(kinds: Any) -> None:
    aws = kinds.add_parser(
        "aws-config",
        help="~/.aws/config with an IAM Identity Center (SSO) profile for the helper (workstations)",
        description="Print ~/.aws/config with a sso-session and a profile naming it merged in; --merge reads an "
        "existing file (never modified) and keeps every other section, key and comment.",
    )
    aws.add_argument("--start-url", required=True, help="the portal URL, e.g. https://d-1234567890.awsapps.com/start")
    aws.add_argument("--sso-region", required=True, help="IAM Identity Center's region")
    aws.add_argument("--role-name", required=True, help="the permission set to assume")
    aws.add_argument("--account-id", default="", help="the account; default: the first --registry's")
    aws.add_argument("--region", default="", help="the profile's region; default: the first --registry's")
    aws.add_argument("--registry", action="append", default=[], metavar="R", help="registry account/region come from")
    aws.add_argument("--profile", default="ecr", help="the profile's name (default ecr)")
    aws.add_argument("--session", default="ecrkit", help="the sso-session's name (default ecrkit)")
    aws.add_argument(
        "--form",
        choices=SSO_PROFILE_FORMS,
        default="sso-session",
        help="sso-session (helper 0.7.0 or later) or legacy (every helper, e.g. Debian 12's 0.6.0)",
    )
    aws.add_argument("--merge", metavar="PATH", help="existing ~/.aws/config to merge into (read only)")
    aws.set_defaults(handler=_render_aws_config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecrkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ecrkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser("render", help="print a rendered file to stdout")
    kinds = render.add_subparsers(dest="kind", required=True)
    docker = kinds.add_parser(
        "docker-config",
        help="a Docker config.json naming the helper",
        description="Print config.json with the helper merged in; --merge reads an existing file "
        "(never modified) and keeps every key ecrkit does not own.",
    )
    _add_rule_arguments(docker)
    docker.add_argument("--merge", metavar="PATH", help="existing config.json to merge into (read only)")
    docker.set_defaults(handler=_render_docker_config)

    _add_aws_config_parser(kinds)
    _add_gitlab_runner_parsers(kinds)
    _add_marathon_parsers(kinds)
    _add_ecr_parsers(kinds)

    rewrite = commands.add_parser(
        "rewrite-image",
        help="rewrite an image reference to its pull-through cache path (for Docker hosts)",
        description="Print IMAGE as the cache path under --via (alpine:3.20 -> R/PREFIX/library/alpine:3.20). "
        "References from other registries than --upstream are printed unchanged.",
    )
    rewrite.add_argument("image", metavar="IMAGE")
    rewrite.add_argument("--via", required=True, metavar="R/PREFIX", help="the cache's registry and prefix")
    rewrite.add_argument(
        "--upstream", default=images.DOCKER_HUB, help="the registry the cache mirrors (default docker.io)"
    )
    rewrite.set_defaults(handler=_rewrite_image)

    copy = commands.add_parser(
        "mirror",
        help="copy images the pull-through cache cannot serve into ECR (tags or tag patterns)",
        description="Copy the images a YAML config lists into ECR: missing repositories are created, tags whose "
        "digest is already there are skipped, multi-arch indexes are kept, failing requests are retried with backoff; "
        f"ECR credentials come from {constants.HELPER_BINARY}. Exit 1 if a copy failed.",
    )
    copy.add_argument("--config", required=True, help="the mirror config (YAML)")
    copy.add_argument("--dry-run", action="store_true", help="compare and report, write nothing")
    copy.add_argument("--jobs", type=integer, default=4, help="copies at once (default 4)")
    copy.add_argument(
        "--shard",
        metavar="I/N",
        help="copy only the I-th of N shares of the repositories (stable: by name); default: GitLab CI's "
        "CI_NODE_INDEX/CI_NODE_TOTAL when set (`parallel: N`), else all",
    )
    copy.add_argument(
        "--json", action="store_true", help="print a machine-readable summary (counts, results, blobs) instead"
    )
    copy.set_defaults(handler=_mirror)

    fetch = commands.add_parser(
        "fetch", help="download s3://BUCKET/KEY to a file, replacing it only if the sha256 matches"
    )
    fetch.add_argument("source", help="s3://BUCKET/KEY")
    fetch.add_argument("--sha256", required=True, help="expected sha256 of the object")
    fetch.add_argument("-o", "--output", required=True, help="destination file")
    fetch.set_defaults(handler=_fetch)

    check = commands.add_parser(
        "validate",
        help="prove that hosts can pull: probe them and report each check (exit 1 if one fails)",
        description="Probe hosts (the local host by default) and judge what each process that runs the helper "
        "gets: the helper on its PATH, its config.json, region, token cache, and a live `get` per registry.",
    )
    check.add_argument(
        "hosts",
        nargs="*",
        metavar="HOST",
        help="inventory host or group names with -i, else [user@]host[:port] over SSH",
    )
    check.add_argument("-i", "--inventory", help="Ansible inventory: hosts, connections and expectations")
    check.add_argument(
        "--registry", action="append", default=[], metavar="R", help="registry to expect and `get` (repeatable)"
    )
    check.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="UNIT",
        help="systemd service that runs the helper (repeatable)",
    )
    check.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME",
        help="user whose login sessions run the helper (repeatable)",
    )
    check.add_argument("--json", action="store_true", help="print the findings as JSON")
    check.add_argument(
        "--junit", metavar="FILE", help="also write JUnit XML (a testsuite per host), e.g. for GitLab's Tests tab"
    )
    check.set_defaults(handler=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None:  # ecrkit run as a program: what its imports made lives until it exits, so the garbage
        gc.freeze()  # collector need not walk it again, nor at exit (a tenth of a mirror run's CPU)
    try:
        return int(args.handler(args))
    except (InputError, FileFormatError, PathError) as exc:
        print(f"ecrkit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EcrkitError as exc:
        print(f"ecrkit: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # `ecrkit ... | head` closed the pipe: no traceback, and none at exit's flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130  # as a shell reports SIGINT


if __name__ == "__main__":
    sys.exit(main())
