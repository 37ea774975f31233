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

# What the CLI calls the inputs (`ecrkit fetch SOURCE --sha256 --output`); a role passes its variables.
CLI_NAMES = ("SOURCE", "--sha256", "--output")


def download_verified(source: str, sha256: str, dest: str, names: tuple[str, str, str] = CLI_NAMES) -> bool:
    """Fetch `s3://bucket/key` to `dest` if it is not already there with this sha256.

    The object is checked in memory (a helper binary is a few MiB) and replaces `dest` atomically
    only after its digest matched, so a mismatch leaves an existing file untouched. Returns True
    when `dest` changed. Errors name the inputs as the caller's user wrote them (`names`).
    """
    source_name, sha256_name, dest_name = names
    expected = validate_sha256(sha256, sha256_name)
    parsed = urlparse(source)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise InputError(source_name, source, "an S3 URI s3://BUCKET/KEY")
    current = files.read_bytes(dest, dest_name, missing_ok=True)
    if current is not None and hashlib.sha256(current).hexdigest() == expected:
        return False
    files.check_writable(dest, dest_name)  # before the download, not after it
    buffer = io.BytesIO()
    try:
        boto3.client("s3").download_fileobj(parsed.netloc, parsed.path.lstrip("/"), buffer)
    except (BotoCoreError, ClientError) as exc:
        raise EcrkitError(f"{source}: download failed ({exc}); {dest} was left untouched") from None
    actual = hashlib.sha256(buffer.getvalue()).hexdigest()
    if actual != expected:
        raise EcrkitError(f"{source}: sha256 is {actual}, expected {expected}; {dest} was left untouched")
    files.write_atomic_bytes(dest, buffer.getvalue(), mode=0o755, source=dest_name)
    return True
