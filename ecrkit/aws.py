"""boto3 operations. Credentials come from the standard chain; none are ever written."""

from __future__ import annotations

import hashlib
import io
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ecrkit import files
from ecrkit.errors import EcrkitError, InputError
from ecrkit.helper import validate_sha256


def download_verified(source: str, sha256: str, dest: str) -> bool:
    """Fetch `s3://bucket/key` to `dest` if it is not already there with this sha256.

    The object is checked in memory (a helper binary is a few MiB) and replaces `dest` atomically
    only after its digest matched, so a mismatch leaves an existing file untouched. Returns True
    when `dest` changed.
    """
    expected = validate_sha256(sha256, "--sha256")
    parsed = urlparse(source)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise InputError("SOURCE", source, "an S3 URI s3://BUCKET/KEY")
    current = files.read_bytes(dest, "--output", missing_ok=True)
    if current is not None and hashlib.sha256(current).hexdigest() == expected:
        return False
    files.check_writable(dest, "--output")  # before the download, not after it
    buffer = io.BytesIO()
    try:
        boto3.client("s3").download_fileobj(parsed.netloc, parsed.path.lstrip("/"), buffer)
    except (BotoCoreError, ClientError) as exc:
        raise EcrkitError(f"{source}: download failed ({exc}); {dest} was left untouched") from None
    actual = hashlib.sha256(buffer.getvalue()).hexdigest()
    if actual != expected:
        raise EcrkitError(f"{source}: sha256 is {actual}, expected {expected}; {dest} was left untouched")
    files.write_atomic_bytes(dest, buffer.getvalue(), mode=0o755, source="--output")
    return True
