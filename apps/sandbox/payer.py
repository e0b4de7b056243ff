"""What every provider's pay page shares: a person's page, or JSON for a test (`Accept`)."""

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render

RESULTS = ("success", "fail")


def wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def not_found(request: HttpRequest, *, template: str, what: str) -> HttpResponse:
    if wants_json(request):
        return JsonResponse({"error": f"no such {what}"}, status=404)
    return render(request, template, {"missing": True}, status=404)


def payer_choice(request: HttpRequest) -> tuple[bool | None, HttpResponse | None]:
    """(True to pay / False to fail, None) for a valid POST `result`, else (None, the 400 answer)."""
    result = request.POST.get("result", "")
    if result in RESULTS:
        return result == "success", None
    message = "result must be success or fail"
    if wants_json(request):
        return None, JsonResponse({"error": message}, status=400)
    return None, HttpResponseBadRequest(message)
