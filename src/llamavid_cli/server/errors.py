"""Failures as OpenAI sends them: `{"error": {"message", "type", "code"}}` with an HTTP status.

Our own exception class travels in `llamavid_type`, so that `ask --server` fails with the same
exit code as `ask` (errors.py's classes; UsageError 2, the rest 1).
"""

from __future__ import annotations

from ..errors import ContextLengthError, LlamaVidError, UsageError, VideoError, VidtokError

# status → OpenAI's error type for it
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    500: "server_error",
    503: "server_error",
}


class ApiError(Exception):
    """A request the server refuses: one line of message, an HTTP status and a short code."""

    def __init__(self, status: int, message: str, code: str, llamavid_type: str = "UsageError"):
        super().__init__(message)
        self.status, self.message, self.code, self.llamavid_type = status, message, code, llamavid_type

    def body(self) -> dict:
        return {"error": error_object(self.status, self.message, self.code, self.llamavid_type)}


def error_object(status: int, message: str, code: str, llamavid_type: str = "LlamaVidError") -> dict:
    return {
        "message": message,
        "type": TYPES.get(status, "invalid_request_error" if status < 500 else "server_error"),
        "param": None,
        "code": code,
        "llamavid_type": llamavid_type,
    }


def from_llamavid(exc: LlamaVidError) -> ApiError:
    """A pipeline failure (a damaged upload, a video that does not fit, an empty question) as a 400."""
    if isinstance(exc, ContextLengthError):
        code = "context_length_exceeded"
    elif isinstance(exc, (VideoError, VidtokError)):
        code = "invalid_media"
    elif isinstance(exc, UsageError):
        code = "invalid_request"
    else:
        code = "llamavid_error"
    return ApiError(400, str(exc), code, type(exc).__name__)
