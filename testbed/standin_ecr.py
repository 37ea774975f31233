"""The registry-level ECR APIs that moto 5.2 lacks, answered in front of moto's server app.

Pull-through cache rules and repository creation templates: kept in memory, in the shapes of
botocore's ECR model (`Create`/`Describe`/`Update`/`Delete`), with the errors AWS names.
Replication (`PutReplicationConfiguration`, `DescribeRegistry`): moto refuses more than one rule
("This feature is disabled"); ECR takes up to 10, so they are kept here. Lifecycle policies:
moto's validator predates the archive storage class (2025-11), so its tables are given the
`transition` action, `targetStorageClass`, `storageClass` and the count types `sinceImagePulled`
and `sinceImageTransitioned`. The stand-in and the tests' HTTP server both serve moto through
this, so ecrkit's code talks to them over HTTP exactly as it talks to AWS.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ecrkit.errors import EcrkitError

ACCOUNT = "123456789012"  # moto's default account
PREFIX = "AmazonEC2ContainerRegistry_V20150921."
OPERATIONS = frozenset(
    f"{verb}{noun}"
    for verb, noun in (
        *((verb, "PullThroughCacheRule") for verb in ("Create", "Update", "Delete")),
        ("Describe", "PullThroughCacheRules"),
        *((verb, "RepositoryCreationTemplate") for verb in ("Create", "Update", "Delete")),
        ("Describe", "RepositoryCreationTemplates"),
        ("Put", "ReplicationConfiguration"),
        ("Describe", "Registry"),
    )
)
REPLICATION_RULES = 10  # ECR's limit
App = Callable[..., Iterable[bytes]]


class Registry:
    """One account's rules and templates; every method returns a response body or raises _Error."""

    def __init__(self) -> None:
        self.rules: dict[str, dict[str, Any]] = {}
        self.templates: dict[str, dict[str, Any]] = {}
        self.replication: dict[str, dict[str, Any]] = {}  # by region: each region's registry has its own
        self.region = ""  # the region of the request being answered
        self.lock = threading.Lock()

    def PutReplicationConfiguration(self, body: dict[str, Any]) -> dict[str, Any]:
        configuration = body["replicationConfiguration"]
        if len(configuration["rules"]) > REPLICATION_RULES:
            raise _Error("InvalidParameterException", f"at most {REPLICATION_RULES} replication rules")
        destinations = [d for rule in configuration["rules"] for d in rule["destinations"]]
        if {"region": self.region, "registryId": ACCOUNT} in destinations:
            raise _Error(
                "InvalidParameterException", "Replication destination cannot be the same as the source registry"
            )
        self.replication[self.region] = configuration
        return {"replicationConfiguration": configuration}

    def DescribeRegistry(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"registryId": ACCOUNT, "replicationConfiguration": self.replication.get(self.region, {"rules": []})}

    def CreatePullThroughCacheRule(self, body: dict[str, Any]) -> dict[str, Any]:
        prefix = body["ecrRepositoryPrefix"]
        if prefix in self.rules:
            raise _Error("PullThroughCacheRuleAlreadyExistsException", f"a rule for {prefix} exists")
        rule = {"registryId": ACCOUNT, "createdAt": time.time(), "updatedAt": time.time(), **body}
        self.rules[prefix] = rule
        return _without(rule, "updatedAt")

    def DescribePullThroughCacheRules(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = body.get("ecrRepositoryPrefixes") or sorted(self.rules)
        missing = [prefix for prefix in wanted if prefix not in self.rules]
        if missing:
            raise _Error("PullThroughCacheRuleNotFoundException", f"no rule for {missing[0]}")
        return {"pullThroughCacheRules": [self.rules[prefix] for prefix in wanted]}

    def UpdatePullThroughCacheRule(self, body: dict[str, Any]) -> dict[str, Any]:
        rule = self._rule(body["ecrRepositoryPrefix"])
        rule.update(body, updatedAt=time.time())
        return _without(rule, "createdAt", "upstreamRegistryUrl", "upstreamRegistry")

    def DeletePullThroughCacheRule(self, body: dict[str, Any]) -> dict[str, Any]:
        self._rule(body["ecrRepositoryPrefix"])
        return _without(self.rules.pop(body["ecrRepositoryPrefix"]), "updatedAt", "upstreamRegistry")

    def CreateRepositoryCreationTemplate(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["prefix"] in self.templates:
            raise _Error("TemplateAlreadyExistsException", f"a template for {body['prefix']} exists")
        self.templates[body["prefix"]] = {**body, "createdAt": time.time(), "updatedAt": time.time()}
        return {"registryId": ACCOUNT, "repositoryCreationTemplate": self.templates[body["prefix"]]}

    def DescribeRepositoryCreationTemplates(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = body.get("prefixes") or sorted(self.templates)
        found = [self.templates[prefix] for prefix in wanted if prefix in self.templates]
        return {"registryId": ACCOUNT, "repositoryCreationTemplates": found}

    def UpdateRepositoryCreationTemplate(self, body: dict[str, Any]) -> dict[str, Any]:
        template = self._template(body["prefix"])
        template.update(body, updatedAt=time.time())
        return {"registryId": ACCOUNT, "repositoryCreationTemplate": template}

    def DeleteRepositoryCreationTemplate(self, body: dict[str, Any]) -> dict[str, Any]:
        self._template(body["prefix"])
        return {"registryId": ACCOUNT, "repositoryCreationTemplate": self.templates.pop(body["prefix"])}

    def _rule(self, prefix: str) -> dict[str, Any]:
        if prefix not in self.rules:
            raise _Error("PullThroughCacheRuleNotFoundException", f"no rule for {prefix}")
        return self.rules[prefix]

    def _template(self, prefix: str) -> dict[str, Any]:
        if prefix not in self.templates:
            raise _Error("TemplateNotFoundException", f"no template for {prefix}")
        return self.templates[prefix]


class _Error(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _region(authorization: str) -> str:
    """The region of a SigV4 request: Credential=KEY/DATE/REGION/SERVICE/aws4_request."""
    scope = authorization.partition("Credential=")[2].split(",")[0].split("/")
    return scope[2] if len(scope) > 2 else "us-east-1"


def _without(record: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in keys}


class MissingExtra(EcrkitError):
    """The stand-in's own dependencies (moto's server, werkzeug: the development requirements) are not installed."""


def require_extra() -> None:
    """Stop, saying what to install, when moto's server is missing: a venv with ecrkit's runtime
    dependencies only (`pip install -e .`) lacks the stand-in's."""
    try:
        import moto.moto_server.werkzeug_app  # noqa: F401, PLC0415
        import werkzeug.serving  # noqa: F401, PLC0415
    except ImportError as exc:
        raise MissingExtra(
            f"the stand-in for AWS and ECR needs moto's server, one of the test bed's development requirements "
            f"({exc}): pip install -r requirements.txt (make venv)"
        ) from None


def moto_app() -> App:
    """moto's server app with the operations it lacks answered here."""
    # moto is the stand-in's dependency (a development requirement), not one of the runtime package's.
    require_extra()
    from moto.ecr import policy_validation  # noqa: PLC0415
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app  # noqa: PLC0415

    # The archive storage class, which moto's lifecycle validator does not know (read at each validation).
    policy_validation.VALID_ACTION_TYPE_VALUES = {"expire", "transition"}
    policy_validation.VALID_ACTION_PROPERTIES = {"type", "targetStorageClass"}
    policy_validation.VALID_SELECTION_PROPERTIES = {*policy_validation.VALID_SELECTION_PROPERTIES, "storageClass"}
    policy_validation.VALID_SELECTION_COUNT_TYPE_VALUES = {
        "imageCountMoreThan",
        "sinceImagePushed",
        "sinceImagePulled",
        "sinceImageTransitioned",
    }
    return with_registry_settings(DomainDispatcherApplication(create_backend_app))


def with_registry_settings(moto: App) -> App:
    """moto's app, with the pull-through and creation-template operations answered here."""
    registry = Registry()
    called: set[str] = set()  # JSON-protocol operations since the last reset, for tests of IAM policies

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/moto-api/reset":  # moto's reset resets these too
            with registry.lock:
                registry.rules.clear()
                registry.templates.clear()
                registry.replication.clear()
                called.clear()
        if environ.get("PATH_INFO") == "/ecrkit/operations":
            body = json.dumps(sorted(called)).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            called.add(target)
        name = target.removeprefix(PREFIX)
        if not target.startswith(PREFIX) or name not in OPERATIONS:
            return moto(environ, start_response)
        operation = getattr(registry, name)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = json.loads(environ["wsgi.input"].read(length) or b"{}")
        try:
            with registry.lock:
                registry.region = _region(environ.get("HTTP_AUTHORIZATION", ""))
                status, response = "200 OK", operation(request)
        except _Error as error:
            status, response = "400 Bad Request", {"__type": error.code, "message": str(error)}
        body = json.dumps(response).encode()
        start_response(status, [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(body)))])
        return [body]

    return app
