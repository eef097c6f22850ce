"""Errors in the OpenAI shape (``{"error": {"message", "type", "code", "param"}}``), so
that OpenAI clients raise their usual exceptions and show the message."""

from __future__ import annotations

import json

from starlette.responses import Response

__all__ = ["error_body", "error_response"]


def error_body(message: str, kind: str, code: str | None, param: str | None = None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": kind, "code": code, "param": param}},
        separators=(",", ":"),
    ).encode()


def error_response(
    status: int,
    message: str,
    kind: str,
    code: str | None,
    *,
    retry_after_s: int | None = None,
    param: str | None = None,
) -> Response:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return Response(
        error_body(message, kind, code, param),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )
