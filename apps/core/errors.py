"""paysys errors and the one DRF exception handler that renders them as Ping++ error objects.

`{"error": {"type", "message", "code"?, "param"?}}`: `code` and `param` are left out, never null,
because the Go SDK type-asserts them as strings.
"""

import logging

from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from apps.core.context import current_request_id

logger = logging.getLogger(__name__)


class PaysysError(Exception):
    """An expected refusal with a stable code. Subclasses fix the HTTP status and error type."""

    status = 400
    type = "invalid_request_error"
    default_code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param


class InvalidRequest(PaysysError):
    status = 400


class AuthenticationError(PaysysError):
    status = 401


class NotFound(PaysysError):
    status = 404
    default_code = "resource_missing"


class Conflict(PaysysError):
    status = 409


class ChannelError(PaysysError):
    status = 402
    type = "channel_error"


class ApiError(PaysysError):
    status = 502
    type = "api_error"


def error_body(*, type: str, message: str, code: str | None = None, param: str | None = None) -> dict:
    error = {"type": type, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return {"error": error}


def _first_validation_error(detail, prefix: str = "") -> tuple[str | None, str]:
    """(param, message) of the first field error in a DRF ValidationError detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else None
            param, message = _first_validation_error(value, f"{prefix}[{key}]" if prefix else str(key))
            if name is None and not prefix:
                return None, message
            return param or (f"{prefix}[{key}]" if prefix else name), message
    if isinstance(detail, list) and detail:
        return _first_validation_error(detail[0], prefix)
    return (prefix or None), str(detail)


def pingpp_exception_handler(exc, context):
    if isinstance(exc, PaysysError):
        body = error_body(type=exc.type, message=exc.message, code=exc.code, param=exc.param)
        return Response(body, status=exc.status)
    if isinstance(exc, drf.ValidationError):
        param, message = _first_validation_error(exc.detail)
        text = f"{param}: {message}" if param else message
        return Response(error_body(type="invalid_request_error", message=text, param=param), status=400)
    if isinstance(exc, drf.ParseError):
        return Response(error_body(type="invalid_request_error", message=str(exc.detail)), status=400)
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        return Response(error_body(type="invalid_request_error", message=str(exc.detail)), status=401)
    if isinstance(exc, Http404 | drf.NotFound):
        return Response(error_body(type="invalid_request_error", message="No such object.", param="id"), status=404)
    if isinstance(exc, drf.APIException):
        return Response(error_body(type="invalid_request_error", message=str(exc.detail)), status=exc.status_code)
    logger.exception("unexpected error in %s", context.get("view"))
    return Response(
        error_body(type="api_error", message=f"Internal error; request id {current_request_id()}."), status=500
    )


def api_not_found(request, exception=None):
    return JsonResponse(error_body(type="invalid_request_error", message="Unrecognized request URL."), status=404)


def api_server_error(request):
    return JsonResponse(
        error_body(type="api_error", message=f"Internal error; request id {current_request_id()}."), status=500
    )
