"""`ecrkit ...`: every renderer and the validator, for users without Ansible. Only this module prints."""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

from ecrkit import __version__, constants, files, helper, images, mirror
from ecrkit.errors import EcrkitError, FileFormatError, InputError, PathError
from ecrkit.registry import Registry, RegistryError, docker_credentials
from ecrkit.settings import (
    ECR_PRIVATE_HOST,
    SSO_PROFILE_FORMS,
    CredentialRule,
    private_registry,
    validate_absolute_path,
)


def _lazy(name: str) -> ModuleType:
    """The module, loaded at its first use: each command imports only what it runs (a mirror run that
    finds nothing to copy never loads the AWS SDK, Ansible or the renderers)."""
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

    from ecrkit import aws, ecr_account, hoststate, job_hosts, plans, validate
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
    aws, ecr_account, hoststate, job_hosts, plans, validate = (
        _lazy(f"ecrkit.{name}") for name in ("aws", "ecr_account", "hoststate", "job_hosts", "plans", "validate")
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
log = logging.getLogger("ecrkit")


class HelpFormatter(argparse.HelpFormatter):
    """The CLI's one help convention: each option's help ends with its default, where it has one
    worth saying; descriptions are wrapped by paragraph, examples printed as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for block in text.split("\n\n"):
            verbatim = block.startswith("example:")
            blocks.append(
                indent + block.replace("\n", "\n" + indent) if verbatim else super()._fill_text(block, width, indent)
            )
        return "\n\n".join(blocks)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or not action.option_strings or action.required or default in (None, False, "", []):
            return text
        return text if default is argparse.SUPPRESS else f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with the help convention above, and a "did you mean" for a mistyped command or option."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("formatter_class", HelpFormatter)
        super().__init__(**options)

    def error(self, message: str) -> NoReturn:
        super().error(message + _did_you_mean(self, message))


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    """The closest command or option to what argparse refused, from every parser below `parser`."""
    import difflib  # noqa: PLC0415 - only for a usage error

    choice = re.match(r"argument \S+: invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        close = difflib.get_close_matches(choice[1], re.findall(r"'([^']*)'", choice[2]), n=1)
        return f"; did you mean '{close[0]}'?" if close else ""
    if not message.startswith("unrecognized arguments: "):
        return ""
    known: set[str] = set()
    parsers = [parser]
    while parsers:
        current = parsers.pop()
        for action in current._actions:
            known.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    hints = {}
    for word in message.removeprefix("unrecognized arguments: ").split():
        close = difflib.get_close_matches(word.split("=")[0], sorted(known), n=1) if word.startswith("-") else []
        hints.update({word: close[0]} if close else {})
    if len(hints) == 1:
        return f"; did you mean {next(iter(hints.values()))}?"
    return f"; did you mean {', '.join(f'{close} for {word}' for word, close in hints.items())}?" if hints else ""


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


def jobs(text: str) -> int:
    """--jobs: copies at once, within ecrkit's one range (ecr_mirror_jobs takes the same)."""
    value, (low, high) = integer(text), constants.MIRROR_JOBS
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value} is not from {low} to {high}")
    return value


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
AUTOSCALER_OPTIONS = ("capacity_per_instance", "max_use_count", "max_instances", "instance_ready_command",
                      "plugin_config", "connector_config", "policy")  # fmt: skip
OPTION_NAMES = {
    "registries": "--registry",
    "runners": "--runner",
    "userdata_path": "--userdata",
    # [runners.autoscaler]'s keys, as _autoscaler takes them from the options
    **{f"autoscaler.{key}": "--" + key.replace("_", "-") for key in AUTOSCALER_OPTIONS},
    "autoscaler.plugin": "--autoscaler-plugin",
    "autoscaler.plugin_config.name": "--autoscaling-group",
}


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
        "autoscaler": _autoscaler(args),
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


def _json_option(text: str, option: str, kind: type) -> Any:
    """A JSON value given on the command line, of the kind the option takes."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError(option, text, f"a JSON {'object' if kind is dict else 'value'} ({exc})") from None
    if not isinstance(value, kind):
        raise InputError(option, text, 'a JSON object, e.g. \'{"idle_count": 1, "idle_time": "20m0s"}\'')
    return value


def _autoscaler(args: argparse.Namespace) -> dict[str, Any]:
    """[runners.autoscaler] from the options given; none given: no keys (not a docker-autoscaler runner)."""
    settings: dict[str, Any] = {
        key: value
        for key, value in {
            "plugin": args.autoscaler_plugin,
            "capacity_per_instance": args.capacity_per_instance,
            "max_use_count": args.max_use_count,
            "max_instances": args.max_instances,
            "instance_ready_command": args.instance_ready_command,
        }.items()
        if value is not None
    }
    plugin_config = _json_option(args.plugin_config, "--plugin-config", dict) if args.plugin_config else {}
    if args.autoscaling_group:
        plugin_config["name"] = args.autoscaling_group
    if plugin_config:
        settings["plugin_config"] = plugin_config
    if args.connector_config:
        settings["connector_config"] = _json_option(args.connector_config, "--connector-config", dict)
    if args.policy:
        settings["policy"] = [_json_option(text, f"--policy[{i}]", dict) for i, text in enumerate(args.policy)]
    return settings


def _render_launch_template(args: argparse.Namespace) -> int:
    text = plans.job_host_userdata(
        _rule(args),
        version=args.version,
        release_base_url=args.release_base_url,
        url=args.url,
        sha256=args.sha256,
        install_dir=args.install_dir,
        form="mime",
        name=plans.options_of(),
    )
    data = job_hosts.launch_template_data(
        text,
        instance_profile=args.instance_profile,
        hop_limit=args.hop_limit,
        image_id=args.image_id,
        instance_type=args.instance_type,
        security_group_ids=args.security_group,
        name=plans.options_of(security_group_ids="--security-group"),
    )
    print(json.dumps(data, indent=2))
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
    for path in args.with_part:  # UTF-8 text: a binary file is refused, naming the byte, never shown
        parts.append((os.path.basename(path), str(files.read_text(path, "--with-part"))))
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
    context = IAM_CONTEXT_NAMES.get(args.context, args.context)
    group = args.autoscaling_group
    document = iam_policy.render(context, args.registry, tuple(args.repository), autoscaling_group=group)
    print(json.dumps(document, indent=2))
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


def _served_by_cache(
    config: dict[str, Any], rules: Callable[[], list[dict[str, Any]]], shard: tuple[int, int]
) -> list[str]:
    """The dry run's word on the pull-through cache: the listed images a rule of the target's account serves,
    or why the rules could not be read (the dry run goes on)."""
    import botocore.exceptions  # noqa: PLC0415 - loaded with the client anyway

    try:
        return [cached.line() for cached in mirror.served_by_cache(config, rules(), shard)]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        return [f"the pull-through cache rules could not be read ({exc}): which images the cache serves is not known"]


def _mirror(args: argparse.Namespace) -> int:
    config = mirror.load(args.config, "--config")
    account, region, _ = private_registry(config["target"], f"{args.config}: target")
    shard = mirror.shard_from(args.shard, os.environ)
    plain_http = set(config.get("plain_http", []))
    registries: dict[str, Registry] = {}
    lock = threading.Lock()

    floor = int(config.get("rate_limit_floor", mirror.DEFAULT_FLOOR))

    def registry(host: str) -> Registry:
        """One client per registry for the whole run: one helper call (one token), one connection pool. ECR
        through its helper; any other source as docker finds its credentials (never the mirror config)."""
        with lock:
            if host not in registries:
                login = mirror.helper_credentials(host) if ECR_PRIVATE_HOST.match(host) else docker_credentials(host)
                registries[host] = Registry(host, credentials=login, plain_http=host in plain_http,
                                            connections=args.jobs,
                                            floor=None if host == config["target"] else floor)  # fmt: skip
            return registries[host]

    def created(host: str, repository: str, platforms: tuple[str, ...], tags: list[str]) -> dict[str, str]:
        return mirror.creation_times(registry(host), repository, tags, platforms, args.jobs)

    try:
        planned = mirror.plan(config, lambda host, repository: registry(host).tag_list(repository), shard, created)
    except RegistryError as exc:
        raise EcrkitError(f"selecting tags: {exc}") from None

    clients: list[Any] = []
    making_client = threading.Lock()

    def ecr() -> Any:  # the AWS SDK only when something is to be copied, or in a dry run
        """One ECR client for the run (jobs ask for their repositories at once; a client is thread-safe, its
        making is not)."""
        with making_client:
            if not clients:
                import botocore.session  # noqa: PLC0415 - boto3's client is botocore's; boto3 adds s3transfer

                clients.append(botocore.session.get_session().create_client("ecr", region_name=region))
            return clients[0]

    def ensure(names: Iterable[str], dry_run: bool) -> list[str]:
        return mirror.ensure_repositories(ecr(), account, names, dry_run)

    if args.dry_run and not args.json:
        for line in [line for selection in planned.selections for line in selection.lines()]:
            print(f"{'rule':<12} {line}")
        for line in _served_by_cache(config, lambda: mirror.pull_through_rules(ecr(), account), shard):
            print(f"{'cached':<12} {line}")

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
            if result.status != "stopped":  # one line per stopped source says it (below), not one per tag
                print(f"{result.status:<12} {result.what}  {result.detail}".rstrip())
        for line in outcome.stops:
            print(f"stopped      {line}")
        for host, limit in outcome.limits.items():
            print(f"rate limit: {host}: {limit['remaining']} of {limit['limit']} remaining "
                  f"(window {limit['window_seconds']} s, floor {limit['floor']})")  # fmt: skip
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
    # Either job probe option implies the rest; an empty one given is refused, never taken as unset.
    local_jobs = args.local_jobs or args.job_probe_image is not None or args.job_probe_network is not None
    given = {
        "ecrkit_instance_metadata": args.instance_metadata or local_jobs or None,
        "ecrkit_local_jobs": local_jobs or None,
        "ecrkit_job_probe_image": args.job_probe_image,
        "ecrkit_job_probe_network": args.job_probe_network,
    }
    targets = validate.targets_from_arguments(
        args.hosts, args.inventory, args.registry, args.service, args.user, args.vault_password_file,
        metadata={key: value for key, value in given.items() if value is not None},
    )  # fmt: skip
    if args.junit:
        files.check_writable(args.junit, "--junit")  # before any host is probed
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"probing {len(targets)} host(s)", total=len(targets))
        reports = validate.validate_all(
            targets, lambda _: progress.advance(task), vault_password_file=args.vault_password_file
        )
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
    parser.add_argument(
        "--helper-version", dest="version", default=constants.HELPER_VERSION, metavar="X.Y.Z",
        help=f"the {constants.HELPER_BINARY} release to install",
    )  # fmt: skip
    parser.add_argument("--version", dest="version", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old name
    if pinned:  # an app definition, not a script on the host: it names one architecture and one sha256
        parser.add_argument("--arch", choices=["amd64", "arm64"], default="amd64", help="the agents' architecture")
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


def _example(*lines: str) -> str:
    """A subcommand's epilog: what a user types."""
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def _add_gitlab_runner_parsers(kinds: Any) -> None:
    """render runner-config and render userdata: GitLab Runner managers and their job hosts."""
    runner = kinds.add_parser(
        "runner-config",
        help="GitLab Runner's config.toml with ecrkit's keys merged in (prints; writes with --in-place)",
        description="Print config.toml with DOCKER_AUTH_CONFIG (and, for docker+machine runners, the amazonec2 "
        "MachineOptions; for docker-autoscaler runners, the [runners.autoscaler] keys given) merged in as TOML: "
        "tokens, comments and unknown keys are kept. The file is modified only with --in-place (atomically and "
        "durably, mode 0600; never over a change GitLab Runner made meanwhile).",
        epilog=_example(
            f"ecrkit render runner-config --config /etc/gitlab-runner/config.toml --registry {ECR} --in-place",
            f"ecrkit render runner-config --config /etc/gitlab-runner/config.toml --registry {ECR} \\\n"
            "    --autoscaler-plugin aws --autoscaling-group gitlab-jobs --max-instances 10 --max-use-count 1 \\\n"
            '    --policy \'{"idle_count": 1, "idle_time": "20m0s"}\'',
        ),
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
        default=constants.HOP_LIMIT,
        help=f"IMDSv2 response hop limit for job hosts (default {constants.HOP_LIMIT}: job containers cannot reach the "
        "instance role; 2 lets every job read its credentials)",
    )
    scaler = runner.add_argument_group(
        "docker-autoscaler runners ([runners.autoscaler]; only the keys given are written, others are kept)"
    )
    scaler.add_argument(
        "--autoscaler-plugin", metavar="NAME",
        help="the fleeting plugin, e.g. aws or aws:latest (16.11+: `gitlab-runner fleeting install` fetches it)",
    )  # fmt: skip
    scaler.add_argument(
        "--autoscaling-group", metavar="NAME", help="plugin_config name: the job hosts' Auto Scaling group"
    )
    scaler.add_argument(
        "--plugin-config", metavar="JSON",
        help="other plugin_config keys as a JSON object (aws: profile, config_file, credentials_file, region)",
    )  # fmt: skip
    scaler.add_argument("--capacity-per-instance", type=integer, metavar="N", help="jobs an instance runs at once")
    scaler.add_argument("--max-use-count", type=integer, metavar="N", help="jobs an instance runs before removal")
    scaler.add_argument("--max-instances", type=integer, metavar="N", help="instances at most, in use or idle")
    scaler.add_argument(
        "--instance-ready-command", metavar="CMD",
        help="run on each new instance before it gets jobs; when autoscaler keys are given and this is not: "
        "ecrkit's, which waits for the userdata (cloud-init) and the helper",
    )  # fmt: skip
    scaler.add_argument(
        "--connector-config", metavar="JSON",
        help="connector_config as a JSON object, e.g. '{\"username\": \"ec2-user\", \"use_external_addr\": true}'",
    )  # fmt: skip
    scaler.add_argument(
        "--policy", action="append", default=[], metavar="JSON",
        help="a [[runners.autoscaler.policy]] as a JSON object, e.g. '{\"idle_count\": 5, \"idle_time\": \"20m0s\"}' "
        "(repeatable; the given list replaces the file's)",
    )  # fmt: skip
    runner.set_defaults(handler=_render_runner_config)

    template = kinds.add_parser(
        "launch-template",
        help="an EC2 launch template's data for docker-autoscaler job hosts (prints)",
        description="Print the LaunchTemplateData JSON of the job hosts' launch template, as the autoscaling_group "
        "role declares it: ecrkit's userdata as MIME (base64), IMDSv2 required with its response hop limit, the "
        "instance profile, and the image, instance type and security groups when given.",
        epilog=_example(
            f"ecrkit render launch-template --registry {ECR} --instance-profile gitlab-job-hosts > data.json",
            "aws ec2 create-launch-template --launch-template-name gitlab-jobs --launch-template-data file://data.json",
        ),
    )
    _add_rule_arguments(template)
    template.add_argument("--instance-profile", default="", metavar="NAME", help="the job hosts' instance profile")
    template.add_argument(
        "--hop-limit", type=integer, default=constants.HOP_LIMIT,
        help="IMDSv2 response hop limit (1 keeps job containers from the instance role; 2 lets them reach it)",
    )  # fmt: skip
    template.add_argument("--image-id", default="", metavar="AMI", help="the AMI (with Docker Engine)")
    template.add_argument("--instance-type", default="", metavar="TYPE", help="e.g. t3.medium")
    template.add_argument(
        "--security-group", action="append", default=[], metavar="ID", help="a security group ID (repeatable)"
    )
    _add_binary_arguments(
        template,
        install_dir="/usr/local/bin",
        sha256_help="expected sha256 (default: the URL's .sha256 file, read on the host)",
    )
    template.set_defaults(handler=_render_launch_template)

    job_host = kinds.add_parser(
        "userdata",
        help="userdata for job hosts: install the helper and merge it into /root/.docker/config.json (prints)",
        description="Print userdata (a bash script, #cloud-config that runs it, or a MIME multi-part message) "
        "that installs the helper, checking its sha256 before moving it into place, and merges it into "
        "/root/.docker/config.json. Running it again changes nothing.",
        epilog=_example(f"ecrkit render userdata --registry {ECR} --format mime > userdata.mime"),
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
        help="another userdata part (UTF-8 text) to combine after ecrkit's (with --format mime; typed by its first "
        "line); repeatable",
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
        help="the docker.tar.gz a Marathon app fetches (.docker/config.json naming the helper; writes -o)",
        description="Write a reproducible docker.tar.gz holding only .docker/config.json to --output "
        "(atomically and durably); an unchanged archive is not rewritten.",
        epilog=_example(f"ecrkit render docker-tar --registry {ECR} -o /etc/docker.tar.gz"),
    )
    _add_rule_arguments(tar)
    tar.add_argument("-o", "--output", required=True, metavar="PATH", help="where to write it, e.g. /etc/docker.tar.gz")
    tar.set_defaults(handler=_render_docker_tar)

    marathon_app = kinds.add_parser(
        "marathon-app",
        help="a Marathon app whose docker pull authenticates through the fetched docker.tar.gz (prints)",
        description="Print a Marathon app definition (Docker containerizer) that fetches docker.tar.gz, "
        "validated against Marathon's app schema.",
        epilog=_example(f"ecrkit render marathon-app --id /team/app --image {ECR}/team/app:1.0 --instances 2"),
    )
    marathon_app.add_argument("--id", required=True, help="app id, e.g. /team/app")
    marathon_app.add_argument("--image", required=True, help="image reference in ECR")
    marathon_app.add_argument("--cpus", type=number, default=0.1, help="CPU shares per instance")
    marathon_app.add_argument("--mem", type=number, default=128, help="memory per instance, in MiB")
    marathon_app.add_argument("--instances", type=integer, default=1, help="how many instances to run")
    marathon_app.add_argument("--force-pull", action="store_true", help="pull on every launch (forcePullImage)")
    marathon_app.add_argument("--uri", default=marathon.DOCKER_TAR_URI, help="where agents have the archive")
    marathon_app.add_argument("--cmd", default="", help="command to run (default: the image's)")
    marathon_app.set_defaults(handler=_render_marathon_app)

    installer = kinds.add_parser(
        "marathon-installer",
        help="a Marathon app that installs the pinned helper on every agent (one task per agent; prints)",
        description="Print a Marathon app with constraint hostname UNIQUE that fetches the helper, checks its "
        "sha256, and installs it into a directory DC/OS upgrades keep. Scale --instances to the agent count.",
        epilog=_example(
            "ecrkit render marathon-installer --sha256 $(curl -s URL.sha256 | cut -d' ' -f1) --instances 5"
        ),
    )
    _add_binary_arguments(
        installer,
        install_dir="/usr/bin",
        sha256_help="the binary's sha256 (from the release's .sha256)",
        pinned=True,
    )
    installer.add_argument("--instances", type=integer, default=1, help="the number of agents")
    installer.set_defaults(handler=_render_marathon_installer)


# --for takes the policy's contexts and the inventory's, as the roles and docs name them.
IAM_CONTEXT_NAMES = {"gitlab_runner": "runner-manager", "job_host": "job-host", "marathon_agent": "agent",
                     "ecr_account": "admin", "pull_through": "pull-through",
                     "ecr_mirror": "mirror"}  # fmt: skip


def _add_ecr_parsers(kinds: Any) -> None:
    """render iam-policy and registries-conf: the ECR side and redirects."""
    policy = kinds.add_parser(
        "iam-policy",
        help="a least-privilege IAM policy for a context that pulls from ECR (prints)",
        description="Print an IAM policy document: ecr:GetAuthorizationToken (and admin's registry-level actions, "
        "which take no resource type) on *, the context's repository actions on the named repositories (all "
        "repositories when none is named); no wildcard actions.",
        epilog=_example(f"ecrkit render iam-policy --for gitlab_runner --registry {ECR} --repository team/*"),
    )
    contexts = sorted(iam_policy.CONTEXTS) + sorted(IAM_CONTEXT_NAMES)
    policy.add_argument(
        "--for", dest="context", required=True, choices=contexts, metavar="CONTEXT",
        help=f"who uses the policy: {', '.join(sorted(iam_policy.CONTEXTS))}, or the context's name "
        f"({', '.join(f'{name} = {same}' for name, same in IAM_CONTEXT_NAMES.items())})",
    )  # fmt: skip
    policy.add_argument("--registry", default="", help="the registry the repositories live in")
    policy.add_argument(
        "--repository", action="append", default=[], metavar="NAME", help="repeatable; NAME/* for a prefix"
    )
    policy.add_argument(
        "--autoscaling-group", metavar="NAME",
        help="runner-manager of docker-autoscaler job hosts: also its fleeting plugin's rights on this group (scale "
        "it, describe it and its instances, EC2 Instance Connect to the instances it tagged), in --registry's "
        "account and region",
    )  # fmt: skip
    policy.set_defaults(handler=_render_iam_policy)

    replication = kinds.add_parser(
        "replication-policy",
        help="the registry policy a replication destination needs (ecr:ReplicateImage, ecr:CreateRepository; prints)",
        description="Print the registry permissions policy to put in the destination registry (put-registry-policy) "
        "so that the source accounts can replicate into it; ecr_account applies it for accounts of the inventory.",
        epilog=_example(f"ecrkit render replication-policy --registry {ECR} --source-account 210987654321"),
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
        help="a registries.conf drop-in mirroring docker.io through a pull-through cache (podman, CRI-O; prints)",
        description="Print a containers-registries.conf(5) drop-in whose mirror sends pulls of --upstream to the "
        "ECR pull-through cache under --cache-prefix; podman, buildah, skopeo and CRI-O read it.",
        epilog=_example(
            f"ecrkit render registries-conf --registry {ECR} --cache-prefix docker-hub "
            "> /etc/containers/registries.conf.d/50-ecrkit-mirror.conf"
        ),
    )
    conf.add_argument("--registry", required=True, help="the ECR registry of the cache")
    conf.add_argument(
        "--cache-prefix", required=True, help="the pull-through rule's repository prefix, e.g. docker-hub"
    )
    conf.add_argument("--upstream", default=images.DOCKER_HUB, help="the registry to mirror")
    conf.set_defaults(handler=_render_registries_conf)


def _add_aws_config_parser(kinds: Any) -> None:
    aws = kinds.add_parser(
        "aws-config",
        help="~/.aws/config with an IAM Identity Center (SSO) profile for the helper (workstations; prints)",
        description="Print ~/.aws/config with a sso-session and a profile naming it merged in; --merge reads an "
        "existing file (never modified) and keeps every other section, key and comment.",
        epilog=_example(
            "ecrkit render aws-config --start-url https://d-1234567890.awsapps.com/start "
            f"--sso-region eu-west-1 --role-name ECRPull --registry {ECR} --merge ~/.aws/config"
        ),
    )
    aws.add_argument("--start-url", required=True, help="the portal URL, e.g. https://d-1234567890.awsapps.com/start")
    aws.add_argument("--sso-region", required=True, help="IAM Identity Center's region")
    aws.add_argument("--role-name", required=True, help="the permission set to assume")
    aws.add_argument("--account-id", default="", help="the account; default: the first --registry's")
    aws.add_argument("--region", default="", help="the profile's region; default: the first --registry's")
    aws.add_argument(
        "--registry", action="append", default=[], metavar="R", help="registry the account and region come from"
    )
    aws.add_argument("--profile", default="ecr", help="the profile's name")
    aws.add_argument("--session", default="ecrkit", help="the sso-session's name")
    aws.add_argument(
        "--form",
        choices=SSO_PROFILE_FORMS,
        default="sso-session",
        help="sso-session (helper 0.7.0 or later) or legacy (every helper, e.g. Debian 12's 0.6.0)",
    )
    aws.add_argument("--merge", metavar="PATH", help="existing ~/.aws/config to merge into (read only)")
    aws.set_defaults(handler=_render_aws_config)


def _usage_error(parser: argparse.ArgumentParser, what: str) -> Callable[[argparse.Namespace], int]:
    """The handler of a command given without its subcommand: a usage error naming the choices."""

    def handler(args: argparse.Namespace) -> int:
        choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
        parser.error(f"{what} is required: {', '.join(choices)}")

    return handler


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ecrkit",
        description="Container hosts that pull from Amazon ECR with no stored credentials: render what each context "
        "needs, copy images into ECR, and prove that hosts can pull.",
        epilog="Commands that write files say so in their help; the others print. Exit status: 0 done, 1 failed "
        "(a check, a copy, an AWS call), 2 bad input.\n\n"
        + _example(f"ecrkit render docker-config --registry {ECR}", "ecrkit validate -i inventory/hosts.yml"),
    )
    parser.add_argument("--version", action="version", version=f"ecrkit {__version__}")
    parser.add_argument(
        "--debug", action="store_true",
        help="log on stderr what ecrkit calls (commands, AWS API operations, registry requests; never a secret), "
        "and where an error came from",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.set_defaults(handler=_usage_error(parser, "a command"))

    render = commands.add_parser(
        "render",
        help="render a file for one context (prints it; docker-tar -o and runner-config --in-place write it)",
        description="Render what one context needs. Each kind prints to stdout, except docker-tar, which writes "
        "--output, and runner-config --in-place, which rewrites --config.",
        epilog=_example(f"ecrkit render docker-config --registry {ECR} --merge ~/.docker/config.json"),
    )
    kinds = render.add_subparsers(dest="kind", metavar="KIND")
    render.set_defaults(handler=_usage_error(render, "a kind to render"))
    docker = kinds.add_parser(
        "docker-config",
        help="a Docker config.json naming the helper (prints)",
        description="Print config.json with the helper merged in; --merge reads an existing file "
        "(never modified) and keeps every key ecrkit does not own.",
        epilog=_example(f"ecrkit render docker-config --registry {ECR} --merge ~/.docker/config.json"),
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
        help="rewrite an image reference to its pull-through cache path (for Docker hosts; prints)",
        description="Print IMAGE as the cache path under --via (alpine:3.20 -> R/PREFIX/library/alpine:3.20). "
        "References from other registries than --upstream are printed unchanged.",
        epilog=_example(f"ecrkit rewrite-image alpine:3.20 --via {ECR}/docker-hub"),
    )
    rewrite.add_argument("image", metavar="IMAGE", help="an image reference, e.g. alpine:3.20 or docker.io/x/y:1")
    rewrite.add_argument("--via", required=True, metavar="R/PREFIX", help="the cache's registry and prefix")
    rewrite.add_argument("--upstream", default=images.DOCKER_HUB, help="the registry the cache mirrors")
    rewrite.set_defaults(handler=_rewrite_image)

    copy = commands.add_parser(
        "mirror",
        help="copy images the pull-through cache cannot serve into ECR (tags, patterns, tag rules; writes to ECR)",
        description="Copy the images a YAML config lists into ECR: tags named, or chosen by rules (shell patterns, "
        "regular expressions, semver ranges, the latest N), missing repositories are created, tags whose digest is "
        "already there are skipped, multi-arch indexes are kept (or only the `platforms` asked for), failing requests "
        "are retried with backoff; "
        f"ECR credentials come from {constants.HELPER_BINARY}. Exit 1 if a copy failed.",
        epilog=_example(
            "ecrkit mirror --config mirror.yml --dry-run",
            "ecrkit mirror --config mirror.yml --jobs 8",
            "ecrkit mirror --config ssm:/ecrkit/mirror --json",
        ),
    )
    copy.add_argument(
        "--config",
        required=True,
        metavar="PATH|ssm:/NAME",
        help="the mirror config (YAML): a file, or an SSM Parameter Store parameter (String or SecureString, "
        "read with the usual AWS credentials and AWS_REGION)",
    )
    copy.add_argument(
        "--dry-run",
        action="store_true",
        help="compare and report, write nothing; also say why each rule chose its tags, and which images a "
        "pull-through cache rule of the target account serves",
    )
    copy.add_argument("--jobs", type=jobs, default=4, help="copies at once, {} to {}".format(*constants.MIRROR_JOBS))
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
        "fetch",
        help="download s3://BUCKET/KEY to a file, replacing it only if the sha256 matches (writes -o)",
        description="Download an S3 object (the helper binary, say) with the AWS credentials of the environment, "
        "check its sha256 in memory, and only then replace --output atomically and durably; a file already "
        "holding that sha256 is not downloaded again.",
        epilog=_example(
            "ecrkit fetch s3://my-bucket/helpers/docker-credential-ecr-login --sha256 HEX "
            "-o /usr/local/bin/docker-credential-ecr-login"
        ),
    )
    fetch.add_argument("source", metavar="SOURCE", help="s3://BUCKET/KEY")
    fetch.add_argument("--sha256", required=True, help="expected sha256 of the object")
    fetch.add_argument("-o", "--output", required=True, metavar="PATH", help="destination file")
    fetch.set_defaults(handler=_fetch)

    check = commands.add_parser(
        "validate",
        help="prove that hosts can pull: probe them and report each check (exit 1 if one fails; --junit writes)",
        description="Probe hosts (the local host by default) and judge what each process that runs the helper "
        "gets: the helper on its PATH, its config.json, region, token cache, and a live `get` per registry.",
        epilog=_example(
            "ecrkit validate -i inventory/hosts.yml --junit report.xml",
            f"ecrkit validate admin@runner-1 --service gitlab-runner --registry {ECR}",
        ),
    )
    check.add_argument(
        "hosts",
        nargs="*",
        metavar="HOST",
        help="inventory host or group names with -i, else [user@]host[:port] over SSH",
    )
    check.add_argument(
        "-i", "--inventory", metavar="PATH", help="Ansible inventory: hosts, connections and expectations"
    )
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
    metadata = check.add_argument_group(
        "EC2 instances (these replace the inventory's ecrkit_instance_metadata, ecrkit_local_jobs, "
        "ecrkit_job_probe_image and ecrkit_job_probe_network for every host; docs/validation.md)"
    )
    metadata.add_argument(
        "--instance-metadata", action="store_true",
        help="the hosts get credentials from their instance role: ask IMDS (role, IMDSv1)",
    )  # fmt: skip
    metadata.add_argument(
        "--local-jobs", action="store_true",
        help="jobs run in containers on the hosts: also run a job's probe there (implies --instance-metadata)",
    )  # fmt: skip
    metadata.add_argument(
        "--job-probe-image", metavar="IMAGE",
        help=f"the job probe's image, with sh and curl, never pulled (implies --local-jobs; default "
        f"{constants.role_default('ecrkit_job_probe_image')})",
    )  # fmt: skip
    metadata.add_argument(
        "--job-probe-network", metavar="NET",
        help="the jobs' Docker network: bridge (default), a network's name or container:NAME (implies --local-jobs)",
    )  # fmt: skip
    check.add_argument(
        "--vault-password-file",
        metavar="FILE",
        help="Ansible Vault password file for the inventory's secrets (or ANSIBLE_VAULT_PASSWORD_FILE, ansible.cfg)",
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
    if args.debug:
        _log_calls()
    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # a reader that left is found here, not by exit's flush (exit 120, Python 3.13)
        return code
    except (InputError, FileFormatError, PathError) as exc:
        return _failed(args, exc, EXIT_USAGE)
    except EcrkitError as exc:
        return _failed(args, exc, EXIT_FAILED)
    except BrokenPipeError:  # `ecrkit ... | head` closed the pipe: no traceback, and none at exit's flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130  # as a shell reports SIGINT


def _failed(args: argparse.Namespace, exc: Exception, code: int) -> int:
    """Say why on stderr; a command asked for --json says it on stdout too, in the document's place,
    so that a job parsing stdout never reads an empty file."""
    print(f"ecrkit: {exc}", file=sys.stderr)
    log.debug("where it failed", exc_info=exc)
    if getattr(args, "json", False):
        print(json.dumps({"exit_code": code, "error": str(exc)}, indent=2))
    return code


class _AwsCalls(logging.Filter):
    """botocore's 'Making request' line, cut to the service, operation and endpoint: its parameters
    (bodies, headers) stay out of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Making request for") or not record.args:
            return False
        operation, request = record.args[0], record.args[1] if len(record.args) > 1 else {}  # type: ignore[index]
        service = getattr(getattr(operation, "service_model", None), "service_name", "?")
        url = request.get("url", "") if isinstance(request, dict) else ""
        record.msg, record.args = "AWS %s.%s %s", (service, getattr(operation, "name", operation), url)
        record.name = "ecrkit"
        return True


def _log_calls() -> None:
    """--debug: what ecrkit calls, on stderr (the package logs commands and registry requests on the
    'ecrkit' logger; botocore's endpoint logger gives the AWS operations)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ecrkit: debug: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    aws_calls = logging.getLogger("botocore.endpoint")
    aws_calls.addHandler(handler)
    aws_calls.setLevel(logging.DEBUG)
    aws_calls.addFilter(_AwsCalls())
    aws_calls.propagate = False


if __name__ == "__main__":
    sys.exit(main())
