"""GatewayError hierarchy, the OpenAI-style error body, exception handlers and the SSE error event."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

import orjson

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from starlette.responses import Response

log = logging.getLogger("gateway")


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose; rendered as OpenAI-shaped JSON."""

    status_code: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str] = "internal_error"
    retryable: ClassVar[bool] = False  # may the same upstream call be tried again (connect error, 429, 5xx)

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}
        if code is not None:
            self.code = code  # type: ignore[misc]  # per-instance override of the class default
        if retryable is not None:
            self.retryable = retryable  # type: ignore[misc]

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def body_bytes(self) -> bytes:
        return orjson.dumps(self.body())


class InvalidRequest(GatewayError):
    status_code = 400
    type = "invalid_request_error"
    code = "invalid_value"


class AuthenticationFailed(GatewayError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status_code = 403
    type = "permission_error"
    code = "permission_denied"


class PolicyDenied(PermissionDenied):
    code = "policy_denied"


class ApprovalRequired(PermissionDenied):
    code = "approval_required"


class NotFound(GatewayError):
    status_code = 404
    type = "not_found_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PromptNotFound(NotFound):
    code = "prompt_not_found"


class ApprovalNotFound(NotFound):
    code = "approval_not_found"


class CallNotFound(NotFound):
    code = "call_not_found"


class EvalRunNotFound(NotFound):
    code = "eval_run_not_found"


class Conflict(GatewayError):
    """The request is valid but the resource's state does not allow it (e.g. an approval already decided)."""

    status_code = 409
    type = "invalid_request_error"
    code = "conflict"


class EvalRequired(Conflict):
    """A gated label (or alias) move without a stored passing run of the gate's suite against that version."""

    code = "eval_required"


class MethodNotAllowed(GatewayError):
    status_code = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status_code = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RequestTimeout(GatewayError):
    """The client stopped sending its request (head or body) for longer than the server allows."""

    status_code = 408
    type = "invalid_request_error"
    code = "request_timeout"


class HeadersTooLarge(GatewayError):
    status_code = 431
    type = "invalid_request_error"
    code = "request_headers_too_large"


class BudgetExceeded(GatewayError):
    status_code = 429
    type = "insufficient_quota"
    code = "budget_exceeded"


class RateLimited(GatewayError):
    status_code = 429
    type = "rate_limit_error"
    code = "rate_limited"


class UpstreamRateLimited(RateLimited):
    """The provider itself answered 429 after our retries and fallbacks."""

    code = "upstream_rate_limited"
    retryable = True


class UpstreamError(GatewayError):
    status_code = 502
    type = "upstream_error"
    code = "provider_error"
    retryable = True


class ModelUnavailable(UpstreamError):
    """A model served in process cannot load here (its optional packages are not installed)."""

    status_code = 503
    code = "model_unavailable"
    retryable = False


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "provider_timeout"
    retryable = False  # the call already took its whole timeout; fallbacks are still tried


class UpstreamInvalidRequest(InvalidRequest):
    """The provider rejected the request as malformed (its 400/422); the caller must change it."""

    code = "upstream_invalid_request"


class UpstreamNotFound(NotFound):
    """The provider does not know the upstream model or path (its 404)."""

    code = "upstream_not_found"


class ServerBusy(GatewayError):
    """The worker already holds as many connections as it allows; the client should retry later."""

    status_code = 503
    type = "server_error"
    code = "too_many_connections"


class ClientDisconnected(GatewayError):
    """The client went away before the answer; nobody sees this body, but records and releases do."""

    status_code = 499
    type = "client_closed_request"
    code = "client_disconnected"


class InternalError(GatewayError):
    """Anything unexpected; the message is generic, the details go to the log with the request id."""


def internal_error(request_id: str | None) -> InternalError:
    return InternalError(f"The gateway failed to handle this request (request id {request_id}); see its log.")


def sse_error_event(error: GatewayError) -> bytes:
    """The last event of a stream that failed after its first byte was sent."""
    return b"data: " + error.body_bytes() + b"\n\n"


def drop_frames(error: BaseException) -> None:
    """Detaches an answered error, and the errors it was raised from, from the frames of the call that failed.

    A failed call's CallContext holds its error (`ctx.error`), whose traceback holds the call's frames, whose
    locals hold the CallContext: a reference cycle per failed call, which only the cyclic collector frees, and
    only in a full collection once the call's objects have aged into the oldest generation. Under a run of
    4xx answers (rate limits, bad keys, refused prompts) the process grew by megabytes a second meanwhile.
    Call it once the error's response is built: the traceback has been logged, if it ever is, by then.
    """
    pending, seen = [error], set()
    while pending:
        exc = pending.pop()
        if id(exc) not in seen:
            seen.add(id(exc))
            exc.__traceback__ = None
            pending += [e for e in (exc.__cause__, exc.__context__) if e is not None]
            pending += getattr(exc, "exceptions", ())  # an ExceptionGroup's members


def error_response(error: GatewayError, request_id: str | None = None) -> Response:
    """The HTTP response of an error. The request-id middleware stamps x-request-id on it; only responses
    built outside that middleware (crashes, rendered by Starlette's outermost ServerErrorMiddleware) pass it."""
    from starlette.responses import Response

    headers = dict(error.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return Response(error.body_bytes(), status_code=error.status_code, headers=headers, media_type="application/json")


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as OpenAI-shaped JSON: ours, FastAPI's validation errors, routing errors, crashes."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    def request_id_of(request: Request) -> str | None:
        return request.scope.get("state", {}).get("request_id")

    def answer(request: Request, error: GatewayError) -> Response:
        request.scope.setdefault("state", {})["error_code"] = error.code  # for the operator log's request line
        return error_response(error)

    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        response = answer(request, exc)
        drop_frames(exc)
        return response

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        return answer(request, InvalidRequest(message, param=param))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error: GatewayError
        if exc.status_code == 404:
            error = NotFound(f"No route {request.method} {request.url.path}; see the README for the API surface.")
        elif exc.status_code == 405:
            error = MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}.")
        else:
            error = InvalidRequest(str(exc.detail))
            error.status_code = exc.status_code  # type: ignore[misc]
        return answer(request, error)

    async def on_crash(request: Request, exc: Exception) -> Response:
        request_id = request_id_of(request)
        log.exception("unhandled error in request %s", request_id, exc_info=exc)
        return error_response(internal_error(request_id), request_id)

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_crash)
