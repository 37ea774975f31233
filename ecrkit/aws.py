"""boto3 operations. Credentials come from the standard chain; none are ever written."""

from __future__ import annotations

import os
import tempfile
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ecrkit.errors import EcrkitError, InputError
from ecrkit.helper import file_sha256, validate_sha256


def download_verified(source: str, sha256: str, dest: str) -> bool:
    """Fetch `s3://bucket/key` to `dest` if it is not already there with this sha256.

    The object lands in a temporary file beside `dest` and replaces it only after its digest
    matched, so a mismatch leaves an existing file untouched. Returns True when `dest` changed.
    """
    expected = validate_sha256(sha256, "sha256")
    parsed = urlparse(source)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise InputError("source", source, "an S3 URI s3://BUCKET/KEY")
    if os.path.exists(dest) and file_sha256(dest) == expected:
        return False
    directory = os.path.dirname(os.path.abspath(dest))
    os.makedirs(directory, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=directory, prefix=".ecrkit-")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                boto3.client("s3").download_fileobj(parsed.netloc, parsed.path.lstrip("/"), out)
            except (BotoCoreError, ClientError) as exc:
                raise EcrkitError(f"{source}: download failed ({exc}); {dest} was left untouched") from None
        actual = file_sha256(partial)
        if actual != expected:
            raise EcrkitError(f"{source}: sha256 is {actual}, expected {expected}; {dest} was left untouched")
        os.chmod(partial, 0o755)
        os.replace(partial, dest)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return True
