"""Errors at the API edge: RFC 9457 problem documents (``application/problem+json``).

Hierarchy::

    Problem                      an HTTP problem with a status and a clear ``detail``
    ├── BadRequest (400)         ├── Conflict (409)
    ├── Unauthorized (401)       ├── PayloadTooLarge (413)
    ├── InsufficientFunds (402)  ├── Unprocessable (422) — field errors in ``errors``
    ├── Forbidden (403)          ├── PreconditionRequired (428)
    ├── NotFound (404)           ├── TooManyRequests (429)
    │                            └── ServiceUnavailable (503) — with ``Retry-After``

The engine's and the catalogue's own errors (``InvalidInput``, ``UnknownName``,
``InvalidTransition``) become problems here, never earlier. A database that cannot be
reached or written (``db.is_unavailable``) is a 503 with ``Retry-After``, answered like
any problem, so the client's keep-alive connection stays usable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from suanli.engine.lifecycle import InvalidTransition
from suanli.errors import InvalidInput
from suanli.service.db import is_unavailable

__all__ = [
    "PROBLEM_RESPONSES",
    "BadRequest",
    "Conflict",
    "FieldError",
    "Forbidden",
    "InsufficientFunds",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionRequired",
    "Problem",
    "ProblemOut",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
    "install_problem_handlers",
    "problem_response",
]

log = logging.getLogger("suanli.service")
MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    field: str
    reason: str


class ProblemOut(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None


class Problem(Exception):
    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors) if errors else None
        self.headers = dict(headers or {})


class BadRequest(Problem):
    pass


class Unauthorized(Problem):
    status, slug, title = 401, "unauthorized", "Not authenticated"


class InsufficientFunds(Problem):
    status, slug, title = 402, "insufficient-funds", "Insufficient funds"


class Forbidden(Problem):
    status, slug, title = 403, "forbidden", "Not allowed"


class NotFound(Problem):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(Problem):
    status, slug, title = 409, "conflict", "Conflict"


class PayloadTooLarge(Problem):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class Unprocessable(Problem):
    status, slug, title = 422, "validation", "Invalid request"


class PreconditionRequired(Problem):
    status, slug, title = 428, "precondition-required", "Precondition required"


class TooManyRequests(Problem):
    status, slug, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(Problem):
    status, slug, title = 503, "unavailable", "Service unavailable"


# Seconds a client is asked to wait when the database is down (a guess, not a promise).
DB_RETRY_AFTER_S = 5


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:suanli:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = [e.model_dump() for e in errors]
    return JSONResponse(
        body, status_code=status, media_type=MEDIA_TYPE, headers=dict(headers or {})
    )


def _loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(request)"


def install_problem_handlers(app: FastAPI) -> None:
    """Every error leaves as a problem document; nothing leaks a traceback."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(
            exc.status,
            exc.slug,
            exc.title,
            exc.detail,
            instance=request.url.path,
            errors=exc.errors,
            headers=exc.headers,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            FieldError(field=_loc(e.get("loc", ())), reason=str(e.get("msg", "invalid")))
            for e in exc.errors()[:20]
        ]
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors[:5]) or "invalid request"
        return problem_response(
            422, "validation", "Invalid request", detail, instance=request.url.path, errors=errors
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        titles = {404: "Not found", 405: "Method not allowed", 401: "Not authenticated"}
        return problem_response(
            exc.status_code,
            "http-" + str(exc.status_code),
            titles.get(exc.status_code, "HTTP error"),
            str(exc.detail),
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    async def on_input(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            422, "validation", "Invalid request", str(exc), instance=request.url.path
        )

    async def on_transition(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            409, "invalid-transition", "Invalid state change", str(exc), instance=request.url.path
        )

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(
            500,
            "internal",
            "Internal error",
            "the exchange failed to handle this request; it has been logged",
            instance=request.url.path,
        )

    async def on_database(request: Request, exc: Exception) -> JSONResponse:
        # Registered for the database's own errors so that they are answered here, in
        # the inner exception layer: the catch-all handler re-raises after answering and
        # the server then drops the client's connection.
        if not is_unavailable(exc):
            return await on_error(request, exc)
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(
            503,
            ServiceUnavailable.slug,
            ServiceUnavailable.title,
            "the exchange's database is unavailable; retry later",
            instance=request.url.path,
            headers={"Retry-After": str(DB_RETRY_AFTER_S)},
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(InvalidTransition, on_transition)
    app.add_exception_handler(InvalidInput, on_input)
    app.add_exception_handler(DBAPIError, on_database)
    app.add_exception_handler(PoolTimeout, on_database)
    app.add_exception_handler(Exception, on_error)


def _doc(description: str) -> dict[str, Any]:
    return {"description": description, "model": ProblemOut}


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _doc("missing or invalid bearer token"),
    403: _doc("the token's role may not do this"),
    422: _doc("the request is invalid; ``errors`` lists each field and why"),
    429: _doc("rate limit exceeded"),
    503: _doc("the database is unavailable; retry after ``Retry-After`` seconds"),
}
