"""URLconf for benchmarks (PAYSYS_URLCONF=bench.urls): paysys.urls plus a baseline endpoint.

`POST /v1/bench/ping` goes through exactly what a merchant API call goes through (the default
DRF authentication: secret key, request signature, replay check; the response signature
middleware) and then does the least a write endpoint can do: one INSERT into `bench_ping`, a
table that bench/api_charge.py creates (no app, no migration). It measures the fixed cost of
the stack, against which POST /v1/charges is compared.
"""

from django.db import connection
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from paysys.urls import handler404, handler500
from paysys.urls import urlpatterns as paysys_urlpatterns


class BenchPingApi(APIView):
    """Authenticated like every merchant API view (the project's default classes)."""

    def post(self, request):
        app_id = request.user.app.public_id
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO bench_ping (app_id, request_id) VALUES (%s, %s) RETURNING id",
                [app_id, request.request_id],
            )
            (row_id,) = cursor.fetchone()
        return Response({"object": "bench_ping", "id": row_id, "app": app_id, "livemode": request.user.livemode})


urlpatterns = [
    path("v1/bench/ping", BenchPingApi.as_view(), name="bench-ping"),
    *paysys_urlpatterns,
]

__all__ = ["handler404", "handler500", "urlpatterns"]
