"""URLconf for benchmarks (PAYSYS_URLCONF=bench.urls): paysys.urls plus two reference endpoints.

`POST /v1/bench/ping` goes through exactly what a merchant API call goes through (the default
DRF authentication: secret key, request signature, replay check; the response signature
middleware) and then does the least a write endpoint can do: one INSERT into `bench_ping`, a
table that bench/api_charge.py creates (no app, no migration). It measures the fixed cost of
the stack, against which POST /v1/charges is compared.

`POST /v1/bench/relay` is the least a charge can be on this stack: the ping's work, then one
signed round trip to a peer server, as a charge's call to its provider. It POSTs a signed ping to
the peer named by `PAYSYS_BENCH_PEER` (bench/api_charge.py points it at the sandbox gunicorn,
which serves this URLconf too), over a kept-alive connection from a urllib3 pool set up like the
Alipay adapter's, as the demo merchant of `PAYSYS_BENCH_DEMO`, and verifies the answer's platform
signature. A charge does the same kinds of work and more on both sides (validation, routing,
three phases, the call log; the gateway's signature check, fault read and trade insert), so the
relay's latency is a floor under the charge's on the same machine.
"""

import functools
import json
import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import urllib3
from django.db import connection
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import crypto
from apps.core.errors import ApiError
from bench.common import PING_PATH, RELAY_PATH
from paysys.urls import handler404, handler500
from paysys.urls import urlpatterns as paysys_urlpatterns
from tests.support import sign_headers

_PEER_POOLS = urllib3.PoolManager(num_pools=4, maxsize=32, block=False, retries=False)


def _ping_insert(request) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bench_ping (app_id, request_id) VALUES (%s, %s) RETURNING id",
            [request.user.app.public_id, request.request_id],
        )
        (row_id,) = cursor.fetchone()
    return row_id


class BenchPingApi(APIView):
    """Authenticated like every merchant API view (the project's default classes)."""

    def post(self, request):
        row_id = _ping_insert(request)
        return Response(
            {"object": "bench_ping", "id": row_id, "app": request.user.app.public_id, "livemode": request.user.livemode}
        )


class PeerUnavailable(ApiError):
    default_code = "bench_peer_failed"


@functools.cache
def _peer() -> tuple[urllib3.HTTPConnectionPool, str, str, str]:
    """The peer's connection pool; the demo merchant's secret key, private key and the platform's
    public key (PEM), read once, as a merchant's client holds them."""
    demo = json.loads(Path(os.environ["PAYSYS_BENCH_DEMO"]).read_text())
    peer = urlsplit(os.environ["PAYSYS_BENCH_PEER"])
    pool = _PEER_POOLS.connection_from_host(peer.hostname, peer.port, peer.scheme)
    private_pem = Path(demo["merchant_private_key_path"]).read_text()
    return pool, demo["test_secret_key"], private_pem, Path(demo["platform_public_key_path"]).read_text()


def _peer_ping() -> dict:
    pool, secret_key, private_pem, platform_pem = _peer()
    body = json.dumps({"nonce": uuid.uuid4().hex}, separators=(",", ":")).encode()
    headers = {
        "Authorization": f"Bearer {secret_key}",
        "Content-Type": "application/json",
        **sign_headers(private_pem=private_pem, body=body, uri=PING_PATH),
    }
    try:
        response = pool.urlopen("POST", PING_PATH, body=body, headers=headers, timeout=10, redirect=False)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise PeerUnavailable(f"The peer could not be reached: {exc}") from exc
    signature = response.headers.get("x-pingplusplus-signature", "")
    if response.status != 200 or not crypto.rsa_verify(platform_pem, response.data, signature):
        raise PeerUnavailable(f"The peer answered HTTP {response.status} without a valid signature.")
    return json.loads(response.data)


class BenchRelayApi(APIView):
    """The ping's work, then one signed round trip to the peer (see the module's docstring)."""

    def post(self, request):
        row_id = _ping_insert(request)
        peer = _peer_ping()
        return Response({"object": "bench_relay", "id": row_id, "peer_id": peer["id"]})


urlpatterns = [
    path(PING_PATH[1:], BenchPingApi.as_view(), name="bench-ping"),
    path(RELAY_PATH[1:], BenchRelayApi.as_view(), name="bench-relay"),
    *paysys_urlpatterns,
]

__all__ = ["handler404", "handler500", "urlpatterns"]
