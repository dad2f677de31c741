"""Every error a client can see. Each class carries its HTTP status and a stable code; the API maps them to
responses, and documents them in its OpenAPI schema, in one place (``amaas.api.errors``). Messages must be safe
to show: no paths, class names or stack traces.
"""

from __future__ import annotations

from typing import ClassVar


class AmaasError(Exception):
    """Base class. HTTP servers should return HTTP_500."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str) -> None:
        # Messages quote what clients sent; a lone surrogate in it would make the JSON body unencodable
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        super().__init__(message)
        self.message = message


class InvalidImageError(AmaasError):
    """The body is not a decodable image. HTTP servers should return HTTP_400."""

    status = 400
    code = "invalid_image"


class InvalidRequestError(AmaasError):
    """The body is malformed (bad JSON, bad base64, missing field). HTTP servers should return HTTP_400."""

    status = 400
    code = "invalid_request"


class ForbiddenError(AmaasError):
    """The request names a resource this deployment may not read (an S3 bucket not configured).
    HTTP servers should return HTTP_403."""

    status = 403
    code = "forbidden"


class NotFoundError(AmaasError):
    """No such route. HTTP servers should return HTTP_404."""

    status = 404
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    """No such model (name or version) on this server. HTTP servers should return HTTP_404."""

    code = "model_not_found"


class ImageNotFoundError(NotFoundError):
    """A referenced image (an S3 object) does not exist. HTTP servers should return HTTP_404."""

    code = "image_not_found"


class TaskNotServedError(NotFoundError):
    """The route is for another task than the served model's (segmenting with a classifier). HTTP servers
    should return HTTP_404."""

    code = "task_not_served"


class MethodNotAllowedError(AmaasError):
    """The route exists but not for this method. HTTP servers should return HTTP_405."""

    status = 405
    code = "method_not_allowed"


class NotAcceptableError(AmaasError):
    """No answer in a form the Accept header allows (a PNG for several images). HTTP servers should return
    HTTP_406."""

    status = 406
    code = "not_acceptable"


class PayloadTooLargeError(AmaasError):
    """The body or the decoded image exceeds a configured limit. HTTP servers should return HTTP_413."""

    status = 413
    code = "payload_too_large"


class TooManyImagesError(PayloadTooLargeError):
    """More images in one request than configured. HTTP servers should return HTTP_413."""

    code = "too_many_images"


class UnsupportedMediaTypeError(AmaasError):
    """The Content-Type is not one the endpoint accepts. HTTP servers should return HTTP_415."""

    status = 415
    code = "unsupported_media_type"


class InvalidParameterError(AmaasError):
    """A query or body parameter is out of range or of the wrong type. HTTP servers should return HTTP_422."""

    status = 422
    code = "invalid_parameter"


class UpstreamError(AmaasError):
    """A service the request depends on (S3) failed. HTTP servers should return HTTP_502."""

    status = 502
    code = "upstream_error"


class ModelUnavailableError(AmaasError):
    """The model artifact is missing, corrupt or failed to load. HTTP servers should return HTTP_503."""

    status = 503
    code = "model_unavailable"


class ManifestError(ModelUnavailableError):
    """The artifact's manifest is missing, unreadable, of an unknown schema, or disagrees with its files."""


class PoisonMessageError(Exception):
    """A batch queue message that is not an S3 event notification: retrying cannot help, the DLQ will hold it.
    Not a client error: no HTTP client ever sees it."""
