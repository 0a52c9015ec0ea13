"""Errors to HTTP, in one place: OpenAI's error shape, never a stack trace."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import RequestRejected
from gateway.logs import get_logger

log = get_logger("scout.http")

def error_type(status: int) -> str:
    """OpenAI's `type` for a status: what its SDKs and dashboards expect (a bad key is an
    `invalid_request_error` with code `invalid_api_key`; a request-rate limit is `requests`
    with code `rate_limit_exceeded`)."""
    if status == 429:
        return "requests"
    return "invalid_request_error" if status < 500 else "server_error"


def error_body(status: int, message: str, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status),
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
        return error_response(exc.status, exc.message, exc.code, exc.param,
                              headers=exc.headers or None)
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
        log.exception("unhandled", method=request.method, path=request.path)
        return error_response(500, "internal error; it has been logged", "internal_error")
