"""What the server lets in: files under --allowed-media-path only, uploads up to a size, one key.

A `file://` path is resolved, symlinks and `..` included, before it is compared with the
allowed folders (themselves resolved), so a link inside an allowed folder that points out of
it is refused: vLLM's `--allowed-local-media-path` rule. Nothing is fetched from the network.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from .errors import ApiError

MB = 1024 * 1024


@dataclass(frozen=True)
class Policy:
    allowed: tuple[Path, ...]  # resolved folders; empty: no file:// at all
    max_upload_bytes: int
    api_key: str | None = None

    @classmethod
    def make(cls, allowed: list[Path], max_upload_mb: float, api_key: str | None) -> Policy:
        return cls(tuple(Path(p).expanduser().resolve() for p in allowed), int(max_upload_mb * MB), api_key or None)

    def local_file(self, raw: str) -> Path:
        """A path the client named, resolved; 403 outside the allowed folders, 404 when missing."""
        path = Path(raw)
        if not path.is_absolute():
            raise ApiError(400, f"{raw!r} is not an absolute path; file:// URLs name absolute paths", "invalid_url")
        if not self.allowed:
            raise ApiError(
                403,
                "file:// is refused: the server was started without --allowed-media-path; "
                "send the file's bytes instead (a data: URL or input_video)",
                "media_path_not_allowed",
            )
        resolved = path.resolve()
        if not any(resolved.is_relative_to(root) for root in self.allowed):
            raise ApiError(403, f"{raw} is outside the folders given by --allowed-media-path", "media_path_not_allowed")
        if not resolved.exists():
            raise ApiError(404, f"{raw} does not exist", "media_not_found")
        if not resolved.is_file():
            raise ApiError(400, f"{raw} is not a regular file", "invalid_media")
        return resolved

    def check_upload(self, size: int) -> None:
        if size > self.max_upload_bytes:
            raise ApiError(
                413,
                f"the upload is {size / MB:.1f} MB, more than this server takes ({self.max_upload_bytes / MB:g} MB, "
                "--max-upload-mb)",
                "upload_too_large",
            )

    def body_limit(self) -> int:
        """Most bytes a request body may have: the upload as base64 (4/3 of it) and room for the text."""
        return self.max_upload_bytes * 4 // 3 + MB

    def check_key(self, authorization: str | None) -> None:
        if self.api_key is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise ApiError(401, "a valid API key is needed: send Authorization: Bearer KEY", "invalid_api_key")
