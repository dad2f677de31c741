"""Images by reference: ``s3://bucket/key`` for images too big for a synchronous payload.

Only buckets named in ``AMAAS_S3_BUCKETS`` may be read, so a caller cannot make the function read whatever
its role happens to reach. boto3 ships with the Lambda Python runtime; it is imported on first use only.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from amaas.errors import ForbiddenError, ImageNotFoundError, InvalidRequestError, PayloadTooLargeError, UpstreamError

# S3's own rules for bucket names (3-63 lowercase letters, digits, dots, hyphens) and keys (1-1024 UTF-8 bytes).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class S3Object:
    """One object, named exactly: the key is the object's key as S3 stores it, never URL-encoded or decoded."""

    bucket: str
    key: str
    version: str | None = None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Fetched:
    """An object's bytes with the ETag and version id of exactly those bytes (from the GET, not the event)."""

    data: bytes
    etag: str | None
    version: str | None


def parse_s3_uri(uri: str) -> S3Object:
    """``s3://bucket/key`` as the AWS CLI reads it: the key is everything after the bucket's slash, literally
    (``%41`` stays three characters, ``#`` and ``?`` are part of the key). No URL parser is involved.

    Raises:
        InvalidRequestError: Not ``s3://`` followed by a valid bucket name, a slash and a key of 1-1024 bytes.
    """
    bucket, slash, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not slash or not _BUCKET.fullmatch(bucket) or not key:
        raise InvalidRequestError("an S3 reference must be s3://bucket/key with a valid bucket name and a key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidRequestError(f"an S3 key is at most {MAX_KEY_BYTES} bytes")
    return S3Object(bucket, key)


@functools.cache
def _client() -> Any:
    import boto3

    from amaas.observability import trace_aws_calls

    trace_aws_calls()
    return boto3.client("s3")


def fetch(obj: S3Object, *, allowed_buckets: tuple[str, ...], max_bytes: int) -> Fetched:
    """Reads one object (its version, if ``obj`` names one), refusing buckets not allowed and objects over
    ``max_bytes`` before downloading them.

    Raises:
        ForbiddenError: The bucket is not configured, or S3 denies access.
        ImageNotFoundError: No such object (or version).
        PayloadTooLargeError: The object is larger than ``max_bytes``.
        UpstreamError: S3 failed otherwise.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    if obj.bucket not in allowed_buckets:
        raise ForbiddenError(f"bucket {obj.bucket} is not one this API may read (configure AMAAS_S3_BUCKETS)")
    try:
        extra = {"VersionId": obj.version} if obj.version else {}
        response = _client().get_object(Bucket=obj.bucket, Key=obj.key, **extra)
        size = int(response["ContentLength"])
        if size > max_bytes:
            response["Body"].close()
            raise PayloadTooLargeError(f"{obj} is {size} bytes; the limit is {max_bytes}")
        data: bytes = response["Body"].read()
        return Fetched(data, response.get("ETag"), response.get("VersionId"))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "NoSuchVersion", "404", "NotFound"):
            raise ImageNotFoundError(f"{obj} does not exist") from exc
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            raise ForbiddenError(f"access to {obj} was denied") from exc
        raise UpstreamError(f"S3 failed to return {obj} ({code or 'error'})") from exc
    except BotoCoreError as exc:
        raise UpstreamError(f"S3 could not be reached for {obj}") from exc


def put(bucket: str, key: str, body: bytes, content_type: str, *, only_over: str | None = None) -> bool:
    """Writes one object (server-side encrypted by the bucket's default).

    Args:
        only_over: Write only if the object is still this version (its ETag), or, as ``""``, only if there is
            no object yet: S3's conditional writes, so two writers racing on one key cannot both win.

    Returns:
        False if the condition failed (someone else wrote first); True once written.

    Raises:
        UpstreamError: S3 refused or could not be reached.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    condition = {} if only_over is None else {"IfMatch": only_over} if only_over else {"IfNoneMatch": "*"}
    try:
        _client().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, **condition)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        raise UpstreamError(f"S3 failed to store s3://{bucket}/{key}") from exc
    except BotoCoreError as exc:
        raise UpstreamError(f"S3 failed to store s3://{bucket}/{key}") from exc
    return True


def get_if_exists(bucket: str, key: str) -> tuple[bytes, str] | None:
    """An object's bytes and ETag, or ``None`` if there is no such object (a result not written yet).

    Raises:
        UpstreamError: S3 refused or could not be reached.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = _client().get_object(Bucket=bucket, Key=key)
        return response["Body"].read(), str(response["ETag"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise UpstreamError(f"S3 failed to return s3://{bucket}/{key}") from exc
    except BotoCoreError as exc:
        raise UpstreamError(f"S3 could not be reached for s3://{bucket}/{key}") from exc
