"""Errors to HTTP, in one place: OpenAI's error shape, never a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import RequestRejected

log = logging.getLogger("scout.http")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 408: "invalid_request_error",
          413: "invalid_request_error",
          415: "invalid_request_error", 429: "rate_limit_error"}


def error_body(status: int, message: str, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, code: str | None = None,
                   param: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(error_body(status, message, code, param)),
                        content_type="application/json", headers=headers)


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestRejected as exc:
        return error_response(exc.status, exc.message, exc.code, exc.param)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # A reason the raiser wrote (e.g. a refused CORS preflight) beats the bare status.
        said = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else None
        message = {404: f"no route for {request.method} {request.path}",
                   405: f"{request.method} is not allowed on {request.path}"}.get(
                       exc.status, said or exc.reason)
        return error_response(exc.status, message, code=exc.reason.lower().replace(" ", "_"),
                              headers={k: v for k, v in exc.headers.items()
                                       if k.lower() == "allow"})
    except (ConnectionResetError, ConnectionError):
        raise
    except Exception:
        log.exception("event=unhandled method=%s path=%s", request.method, request.path)
        return error_response(500, "internal error; it has been logged", "internal_error")
