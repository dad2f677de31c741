"""Images by reference: ``s3://bucket/key`` for images too big for a synchronous payload.

Only buckets named in ``AMAAS_S3_BUCKETS`` may be read, so a caller cannot make the function read whatever
its role happens to reach. boto3 ships with the Lambda Python runtime; it is imported on first use only.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import unquote, urlparse

from amaas.errors import ForbiddenError, ImageNotFoundError, InvalidRequestError, PayloadTooLargeError, UpstreamError


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key).

    Raises:
        InvalidRequestError: Not an ``s3://`` URI with a bucket and a key.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise InvalidRequestError(f"{uri!r} is not an S3 URI of the form s3://bucket/key")
    return parsed.netloc, unquote(parsed.path.lstrip("/"))


@functools.cache
def _client() -> Any:
    import boto3

    return boto3.client("s3")


def fetch(uri: str, *, allowed_buckets: tuple[str, ...], max_bytes: int, version: str | None = None) -> bytes:
    """Reads one object, refusing buckets not allowed and objects over ``max_bytes`` before downloading.

    Raises:
        ForbiddenError: The bucket is not configured, or S3 denies access.
        ImageNotFoundError: No such object.
        PayloadTooLargeError: The object is larger than ``max_bytes``.
        UpstreamError: S3 failed otherwise.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = parse_s3_uri(uri)
    if bucket not in allowed_buckets:
        raise ForbiddenError(f"bucket {bucket} is not one this API may read (configure AMAAS_S3_BUCKETS)")
    try:
        extra = {"VersionId": version} if version else {}
        response = _client().get_object(Bucket=bucket, Key=key, **extra)
        size = int(response["ContentLength"])
        if size > max_bytes:
            response["Body"].close()
            raise PayloadTooLargeError(f"s3://{bucket}/{key} is {size} bytes; the limit is {max_bytes}")
        data: bytes = response["Body"].read()
        return data
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            raise ImageNotFoundError(f"s3://{bucket}/{key} does not exist") from exc
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            raise ForbiddenError(f"access to s3://{bucket}/{key} was denied") from exc
        raise UpstreamError(f"S3 failed to return s3://{bucket}/{key} ({code or 'error'})") from exc
    except BotoCoreError as exc:
        raise UpstreamError(f"S3 could not be reached for s3://{bucket}/{key}") from exc


def put(bucket: str, key: str, body: bytes, content_type: str) -> None:
    """Writes one object (server-side encrypted by the bucket's default).

    Raises:
        UpstreamError: S3 refused or could not be reached.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        _client().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    except (ClientError, BotoCoreError) as exc:
        raise UpstreamError(f"S3 failed to store s3://{bucket}/{key}") from exc
