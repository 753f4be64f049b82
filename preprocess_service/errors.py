"""Domain errors. Each carries its HTTP status and machine-readable code; one handler maps them.

Routes and stages raise these; none builds an error response by hand. The original answered
errors with HTTP 200; here every failure is a real status with ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidRequest(ServiceError):
    status_code, code = 422, "invalid_request"


class EmptyUpload(ServiceError):
    status_code, code = 400, "empty_file"


class UploadTooLarge(ServiceError):
    status_code, code = 413, "file_too_large"


class NotAVideo(ServiceError):
    status_code, code = 415, "not_a_video"


class NoVideoStream(ServiceError):
    status_code, code = 422, "no_video_stream"


class UnreadableVideo(ServiceError):
    status_code, code = 422, "unreadable_video"


class VideoTooLarge(ServiceError):
    status_code, code = 422, "video_too_large"


class VideoTooLong(ServiceError):
    """Longer than a job takes (``DEEPFAKE_JOBS_MAX_VIDEO_S``)."""

    status_code, code = 422, "video_too_long"


class DecodeBudgetExceeded(ServiceError):
    status_code, code = 422, "decode_budget_exceeded"


class UploadTimeout(ServiceError):
    status_code, code = 408, "upload_timeout"


class MalformedUpload(ServiceError):
    status_code, code = 400, "malformed_multipart"


class TooFewFrames(ServiceError):
    status_code, code = 422, "too_few_frames"


class NoFaceDetected(ServiceError):
    status_code, code = 422, "no_face_detected"


class InvalidSignature(ServiceError):
    status_code, code = 400, "invalid_signature_encoding"


class MalformedToken(ServiceError):
    """A receipt, attestation or envelope that cannot even be read (no JWS header, a ``kid`` that is
    not a string, a signing time no date holds): the request is wrong, not merely unproven."""

    status_code, code = 400, "malformed_token"


class Unauthorized(ServiceError):
    status_code, code = 401, "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="deepfake"'})


class RateLimited(ServiceError):
    status_code, code = 429, "rate_limited"


class Overloaded(ServiceError):
    status_code, code = 503, "overloaded"


class BackendUnavailable(ServiceError):
    status_code, code = 503, "backend_unavailable"


class HistoryUnavailable(ServiceError):
    status_code, code = 503, "history_unavailable"


class NotFound(ServiceError):
    status_code, code = 404, "not_found"
