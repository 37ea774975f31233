"""An AWS IAM Identity Center (SSO) profile in ~/.aws/config, merged into what is there.

After `aws sso login --profile ecr` the SDK in the helper finds the cached token, trades it for
role credentials and asks ECR for a registry token: with AWS_PROFILE=ecr, `docker pull` works
without `docker login`. Only what ecrkit manages changes; every other section, key and comment
stays as it was (configupdater).

Two forms. `sso-session` (what `aws configure sso` writes today; the token is refreshed and
cached under the session's name) needs helper 0.7.0 or later: 0.6.x panics on it
(awslabs/amazon-ecr-credential-helper#522). `legacy` puts sso_start_url and sso_region in the
profile (the token is cached under the start URL and not refreshed) and works with every helper
since 0.6.0, Debian 12's package included. `form_for` picks one from the helper's version.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Iterable
from dataclasses import dataclass

from configupdater import ConfigUpdater

from ecrkit.errors import FileFormatError, InputError
from ecrkit.settings import (
    ECR_PUBLIC_HOSTS,
    option_name,
    private_registry,
    validate_account_id,
    validate_region,
    validate_registry,
    validate_url,
)

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z", re.ASCII)
ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}\Z", re.ASCII)
FORMS = ("sso-session", "legacy")
CLI_NAMES = {"name": "profile", "registries": "registry"}  # the role's variable suffix -> the option
FIRST_SSO_SESSION_HELPER = (0, 7, 0)
# Credential sources the SDK prefers to SSO in the same profile: their presence would hide it.
COMPETING = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "credential_process", "role_arn",
             "source_profile", "credential_source", "web_identity_token_file")  # fmt: skip
SECRET_KEYS = ("aws_secret_access_key", "aws_session_token")


def form_for(helper_version: str) -> str:
    """The form the installed helper reads: legacy before 0.7.0, sso-session otherwise (or unknown)."""
    match = re.match(r"^(\d+)\.(\d+)\.(\d+)", helper_version or "")
    if match and tuple(map(int, match.groups())) < FIRST_SSO_SESSION_HELPER:
        return "legacy"
    return "sso-session"


@dataclass(frozen=True)
class SsoProfile:
    profile: str
    session: str
    start_url: str
    sso_region: str
    account_id: str
    role_name: str
    region: str
    form: str = "sso-session"

    @classmethod
    def build(cls, *, profile: str, session: str, start_url: str, sso_region: str, account_id: str, role_name: str,
              region: str, form: str = "sso-session", registries: Iterable[str] = (),
              prefix: str = "") -> SsoProfile:  # fmt: skip
        """Validate every value; `prefix` names the variables in errors (aws_sso_profile_, or --).

        An empty account or region comes from the first private registry named.
        """

        def source(key: str) -> str:  # the role's variable, or the command's option
            return option_name(prefix, CLI_NAMES.get(key, key) if prefix == "--" else key)

        if isinstance(registries, str):
            raise InputError(source("registries"), registries, "a list of registry hostnames")
        # Every registry is checked, even when the account and region are given and none is used.
        named = [validate_registry(host, f"{source('registries')}[{index}]") for index, host in enumerate(registries)]
        first = next((private_registry(host) for host in named if host not in ECR_PUBLIC_HOSTS), None)
        if first is not None:
            account_id, region = account_id or first[0], region or first[1]

        for value, key in ((profile, "name"), (session, "session")):
            if not isinstance(value, str) or not NAME.match(value):
                raise InputError(source(key), value, "letters, digits, '.', '_' or '-' (at most 64)")
        validate_url(
            start_url, source("start_url"), schemes=("https",), example="https://d-1234567890.awsapps.com/start"
        )
        if not isinstance(role_name, str) or not ROLE_NAME.match(role_name):
            raise InputError(source("role_name"), role_name, "a permission set name such as ECRPull")
        if form not in FORMS:
            raise InputError(source("form"), form, f"one of {', '.join(FORMS)}")
        return cls(
            profile=profile,
            session=session,
            start_url=start_url,
            sso_region=validate_region(sso_region, source("sso_region")),
            account_id=validate_account_id(account_id, source("account_id")),
            role_name=role_name,
            region=validate_region(region, source("region")),
            form=form,
        )

    @property
    def profile_section(self) -> str:
        return "default" if self.profile == "default" else f"profile {self.profile}"

    def sections(self) -> dict[str, dict[str, str]]:
        """What ecrkit sets, by section; the profile keys of the other form are removed."""
        portal = {"sso_start_url": self.start_url, "sso_region": self.sso_region}
        role = {"sso_account_id": self.account_id, "sso_role_name": self.role_name, "region": self.region}
        if self.form == "legacy":
            return {self.profile_section: {**portal, **role}}
        return {
            f"sso-session {self.session}": {**portal, "sso_registration_scopes": "sso:account:access"},
            self.profile_section: {"sso_session": self.session, **role},
        }

    @property
    def other_form_keys(self) -> tuple[str, ...]:
        """Profile keys of the other form: left in place, the SDK would reject or misread the profile."""
        return ("sso_session",) if self.form == "legacy" else ("sso_start_url", "sso_region")


def merge(text: str | None, profile: SsoProfile, path: str) -> str:
    """The config with the profile set; refuses a profile that another credential source would win."""
    config = parse(text or "", path)
    existing = config[profile.profile_section] if config.has_section(profile.profile_section) else None
    if existing is not None:
        competing = [key for key in COMPETING if key in existing]
        if competing:
            raise FileFormatError(
                path,
                f"[{profile.profile_section}] also has {', '.join(competing)}, which the SDK would use instead of SSO; "
                "remove it or choose another profile name",
            )
        for key in profile.other_form_keys:
            if key in existing:
                del existing[key]
    for name, keys in profile.sections().items():
        if not config.has_section(name):
            separate = bool(str(config).strip()) and not str(config).endswith("\n\n")
            config.add_section(name)
            if separate:  # a blank line before an added section, as the AWS CLI writes them
                config[name].add_before.space()
        for key, value in keys.items():
            config[name][key] = value
    return str(config)


def parse(text: str, path: str) -> ConfigUpdater:
    config = ConfigUpdater()
    try:
        config.read_string(text)
    except configparser.DuplicateSectionError as exc:  # messages name sections and keys, never a value
        raise FileFormatError(path, f"section [{exc.section}] appears twice (line {exc.lineno})") from None
    except configparser.DuplicateOptionError as exc:
        raise FileFormatError(
            path, f"key {exc.option!r} appears twice in [{exc.section}] (line {exc.lineno})"
        ) from None
    except configparser.Error as exc:
        raise FileFormatError(path, f"not an AWS config file ({str(exc).splitlines()[0]})") from None
    return config


def has_secrets(text: str) -> bool:
    """Whether a config holds keys a log must not show (static or session keys)."""
    config = parse(text, "config")
    return any(key in config[section] for section in config.sections() for key in SECRET_KEYS)
