"""Matrix error bodies: every failure a client sees is {"errcode": "M_...", "error": "..."}."""

from __future__ import annotations

from typing import Any


class MatrixError(Exception):
    def __init__(self, status: int, errcode: str, error: str, **extra: Any):
        super().__init__(f"{status} {errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.error, **self.extra}


def forbidden(error: str = "Forbidden") -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", error)


def not_found(error: str = "Not found") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", error)


def bad_json(error: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", error)


def missing_param(error: str) -> MatrixError:
    return MatrixError(400, "M_MISSING_PARAM", error)


def invalid_param(error: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", error)


def too_large(error: str = "Request body too large") -> MatrixError:
    return MatrixError(413, "M_TOO_LARGE", error)


def unrecognized(error: str = "Unrecognized request") -> MatrixError:
    return MatrixError(404, "M_UNRECOGNIZED", error)


def limit_exceeded(retry_after_ms: int) -> MatrixError:
    err = MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", retry_after_ms=retry_after_ms)
    err.headers["Retry-After"] = str(max(1, (retry_after_ms + 999) // 1000))
    return err


def unavailable(retry_after_s: int = 5) -> MatrixError:
    """503: a dependency (the database) is down; the spec names no errcode for it."""
    err = MatrixError(503, "M_UNKNOWN", "Service temporarily unavailable; retry later")
    err.headers["Retry-After"] = str(retry_after_s)
    return err
