from apps.core.context import accept_request_id, reset_request_id, set_request_id
from apps.core.services import platform_sign

API_PREFIX = "/v1/"
UNSIGNED_PREFIXES = ("/v1/schema/", "/v1/docs/")


class RequestIdMiddleware:
    """Takes `X-Request-Id` (or makes one), exposes it to logs, tasks and rows, and echoes it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = accept_request_id(request.headers.get("X-Request-Id"))
        token = set_request_id(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            reset_request_id(token)
        response["X-Request-Id"] = request.request_id
        return response


class ResponseSignatureMiddleware:
    """Signs every merchant API response body with the platform key (`x-pingplusplus-signature`)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        signed_path = request.path.startswith(API_PREFIX) and not request.path.startswith(UNSIGNED_PREFIXES)
        if signed_path and not response.streaming:
            response["x-pingplusplus-signature"] = platform_sign(response.content)
        return response
