"""The IMDS stand-in: IMDSv2's token rules, expiring role credentials, and the hop limit as a real
routing hop (a job network's namespace behind a host's, which forwards)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.standin import StandIn
from testbed.standin_imds import IMDS_ADDRESS, TOKEN_HEADER, TOKEN_TTL_HEADER, ImdsSettings, ImdsStandIn

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("curl") is None,
    reason="needs root, ip (iproute2) and curl for network namespaces",
)
BASE = f"http://{IMDS_ADDRESS}/latest"
ROLES = f"{BASE}/meta-data/iam/security-credentials/"


@pytest.fixture
def imds(tmp_path: Path) -> Iterator[ImdsStandIn]:
    stand_in = ImdsStandIn(tmp_path / "imds")
    try:
        stand_in.up(ImdsSettings(credential_lifetime=4))
        yield stand_in
    finally:
        stand_in.down()


def curl(imds: ImdsStandIn, namespace: str, *args: str, timeout: int = 2) -> tuple[int, str]:
    """(HTTP status, body) of one request from `namespace`; status 0 when no answer came."""
    done = imds.run(namespace, ["curl", "-s", "-m", str(timeout), "-w", "\n%{http_code}", *args])
    body, _, status = done.stdout.rpartition("\n")
    return (int(status) if done.returncode == 0 else 0), body


def token(imds: ImdsStandIn, namespace: str) -> str | None:
    status, body = curl(imds, namespace, "-X", "PUT", "-H", f"{TOKEN_TTL_HEADER}: 60", f"{BASE}/api/token")
    return body if status == 200 else None


def role_credentials(imds: ImdsStandIn, namespace: str) -> dict[str, str] | None:
    found = token(imds, namespace)
    if found is None:
        return None
    status, role = curl(imds, namespace, "-H", f"{TOKEN_HEADER}: {found}", ROLES)
    if status != 200:
        return None
    status, body = curl(imds, namespace, "-H", f"{TOKEN_HEADER}: {found}", ROLES + role)
    return dict(json.loads(body)) if status == 200 else None


def test_the_address_exists_only_in_the_stand_ins_namespaces(imds: ImdsStandIn) -> None:
    host = imds.add_host("host")
    assert token(imds, host)
    # This machine's own network has no such address and no route to the stand-in.
    assert IMDS_ADDRESS not in Path("/proc/net/fib_trie").read_text()


def test_imdsv2_token_rules(imds: ImdsStandIn) -> None:
    host = imds.add_host("host")
    assert curl(imds, host, "-X", "PUT", f"{BASE}/api/token")[0] == 400  # no TTL
    assert curl(imds, host, "-X", "PUT", "-H", f"{TOKEN_TTL_HEADER}: 21601", f"{BASE}/api/token")[0] == 400
    forwarded = ("-X", "PUT", "-H", f"{TOKEN_TTL_HEADER}: 60", "-H", "X-Forwarded-For: 10.0.0.1")
    assert curl(imds, host, *forwarded, f"{BASE}/api/token")[0] == 403
    assert curl(imds, host, ROLES)[0] == 401  # IMDSv1 refused: tokens required
    assert curl(imds, host, "-H", f"{TOKEN_HEADER}: made-up", ROLES)[0] == 401
    found = token(imds, host)
    assert found
    assert curl(imds, host, "-H", f"{TOKEN_HEADER}: {found}", ROLES) == (200, "ecrkit-host")
    imds.configure(http_tokens="optional")
    assert curl(imds, host, ROLES) == (200, "ecrkit-host")  # IMDSv1 allowed
    assert curl(imds, host, "-H", f"{TOKEN_HEADER}: made-up", ROLES)[0] == 401  # a token given must be valid


def test_a_token_expires(imds: ImdsStandIn) -> None:
    host = imds.add_host("host")
    status, found = curl(imds, host, "-X", "PUT", "-H", f"{TOKEN_TTL_HEADER}: 1", f"{BASE}/api/token")
    assert status == 200
    assert curl(imds, host, "-H", f"{TOKEN_HEADER}: {found}", ROLES)[0] == 200
    time.sleep(1.2)
    assert curl(imds, host, "-H", f"{TOKEN_HEADER}: {found}", ROLES)[0] == 401


def test_identity_document_and_a_host_without_a_role(imds: ImdsStandIn) -> None:
    host = imds.add_host("host")
    found = token(imds, host)
    status, body = curl(imds, host, "-H", f"{TOKEN_HEADER}: {found}", f"{BASE}/dynamic/instance-identity/document")
    assert status == 200
    document = json.loads(body)
    assert (document["region"], document["accountId"]) == ("us-east-1", "123456789012")
    imds.configure(role="")
    assert curl(imds, host, "-H", f"{TOKEN_HEADER}: {found}", ROLES)[0] == 404


def test_credentials_expire_and_rotate(imds: ImdsStandIn) -> None:
    host = imds.add_host("host")
    first = role_credentials(imds, host)
    assert first is not None
    assert first["AccessKeyId"].startswith("ASIA") and len(first["AccessKeyId"]) == 20
    assert role_credentials(imds, host) == first  # the same until half their life is gone
    time.sleep(2.5)
    second = role_credentials(imds, host)
    assert second is not None and second["AccessKeyId"] != first["AccessKeyId"]
    issued = imds.issued()
    assert issued[first["AccessKeyId"]]["expiration"] < issued[second["AccessKeyId"]]["expiration"]


@pytest.mark.parametrize("hop_limit", [1, 2])
def test_the_hop_limit_is_a_real_routing_hop(imds: ImdsStandIn, hop_limit: int) -> None:
    host = imds.add_host("host")
    job = imds.add_job_network(host)
    imds.configure(hop_limit=hop_limit)
    assert role_credentials(imds, host) is not None  # the host itself: no hop
    reached = role_credentials(imds, job)
    if hop_limit == 1:
        assert reached is None  # the token's answer dies at the host's forwarding
        # The job network does reach the stand-in: only the token's answer is limited.
        assert curl(imds, job, ROLES)[0] == 401
    else:
        assert reached is not None


def test_imdsv1_is_not_hop_limited(imds: ImdsStandIn) -> None:
    """As on EC2: the hop limit guards the token, so a job reaches the role while IMDSv1 is allowed."""
    host = imds.add_host("host")
    job = imds.add_job_network(host)
    imds.configure(hop_limit=1, http_tokens="optional")
    assert curl(imds, job, ROLES) == (200, "ecrkit-host")


# -- with the AWS/ECR stand-in: its API takes the credentials until they expire ----------------------


def test_the_api_takes_imds_credentials_until_they_expire(stand_in: StandIn) -> None:
    import boto3  # noqa: PLC0415
    from botocore.exceptions import ClientError  # noqa: PLC0415

    imds = stand_in.imds()
    try:
        imds.up(ImdsSettings(credential_lifetime=4))
        host = imds.add_host("host")
        credentials = role_credentials(imds, host)
        assert credentials is not None

        def ecr(keys: dict[str, str]) -> Any:
            return boto3.client(
                "ecr",
                endpoint_url=stand_in.api_endpoint,
                region_name="us-east-1",
                verify=str(stand_in.ca),
                aws_access_key_id=keys["AccessKeyId"],
                aws_secret_access_key=keys["SecretAccessKey"],
                aws_session_token=keys["Token"],
            )

        assert ecr(credentials).get_authorization_token()["authorizationData"]
        made_up = {**credentials, "AccessKeyId": "ASIAIMDS999999999999"}
        with pytest.raises(ClientError, match="ExpiredTokenException"):
            ecr(made_up).get_authorization_token()
        time.sleep(4.2)
        with pytest.raises(ClientError, match="ExpiredTokenException"):
            ecr(credentials).get_authorization_token()
        rotated = role_credentials(imds, host)
        assert rotated is not None and rotated["AccessKeyId"] != credentials["AccessKeyId"]
        assert ecr(rotated).get_authorization_token()["authorizationData"]
        assert stand_in.client("ecr").get_authorization_token()["authorizationData"]  # other keys: as before
    finally:
        imds.down()
