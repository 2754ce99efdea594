"""Errors the simulator answers with, in the API's error shape (notes §5.3).

Hierarchy::

    ApiError                 an HTTP error response: status, error.type, message
    ├── InvalidRequest       400 invalid_request_error
    ├── Unauthenticated      401 authentication_error
    ├── NotFound             404 not_found_error
    ├── MethodNotAllowed     405 invalid_request_error
    ├── RateLimited          429 rate_limit_error (fault switch)
    └── Overloaded           529 overloaded_error (fault switch)
    SimulatedDrop            not an HTTP answer: the connection is cut on purpose
"""

from __future__ import annotations


class ApiError(Exception):
    status = 500
    error_type = "api_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self, request_id: str) -> dict[str, object]:
        return {
            "type": "error",
            "error": {"type": self.error_type, "message": self.message},
            "request_id": request_id,
        }


class InvalidRequest(ApiError):
    status = 400
    error_type = "invalid_request_error"


class Unauthenticated(ApiError):
    status = 401
    error_type = "authentication_error"


class NotFound(ApiError):
    status = 404
    error_type = "not_found_error"


class MethodNotAllowed(ApiError):
    status = 405
    error_type = "invalid_request_error"


class RateLimited(ApiError):
    status = 429
    error_type = "rate_limit_error"


class Overloaded(ApiError):
    status = 529
    error_type = "overloaded_error"


class SimulatedDrop(Exception):
    """Raised inside a response to make the server close the connection mid-body.

    The server runners filter it out of uvicorn's error log: it is the drop fault
    working, not a bug.
    """
