"""Helpers shared by tests: signed merchant API calls and a local webhook receiver."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from apps.core import crypto
from apps.merchants.services import app_create, merchant_get_or_create


def sign_headers(*, private_pem: str, body: bytes, uri: str, timestamp: int | None = None) -> dict:
    """Ping++ request signature headers: RSA-SHA256 over body + URI + timestamp."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Pingplusplus-Request-Timestamp": ts,
        "Pingplusplus-Signature": crypto.rsa_sign(private_pem, body + uri.encode() + ts.encode()),
    }


@dataclass
class MerchantCredentials:
    app: object
    test_secret_key: str
    live_secret_key: str
    private_pem: str
    public_pem: str


class MerchantClient:
    """Calls the merchant API through Django's test client, signed as the Python SDK signs."""

    def __init__(self, client, creds: MerchantCredentials, *, livemode: bool = False, sign: bool = True):
        self.client = client
        self.creds = creds
        self.key = creds.live_secret_key if livemode else creds.test_secret_key
        self.sign = sign
        self._last_timestamp = 0

    def _timestamp(self) -> int:
        """A fresh second per request: an identical request signed in the same second is a replay."""
        self._last_timestamp = max(int(time.time()), self._last_timestamp + 1)
        return self._last_timestamp

    def headers(self, body: bytes, uri: str, **overrides) -> dict:
        headers = {"Authorization": f"Bearer {self.key}"}
        if self.sign:
            headers.update(
                sign_headers(private_pem=self.creds.private_pem, body=body, uri=uri, timestamp=self._timestamp())
            )
        headers.update(overrides)
        return headers

    def post(self, path: str, payload, **header_overrides):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.client.generic(
            "POST", path, body, content_type="application/json", headers=self.headers(body, path, **header_overrides)
        )

    def get(self, path: str, **header_overrides):
        return self.client.generic("GET", path, headers=self.headers(b"", path, **header_overrides))


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes


@dataclass
class Receiver:
    """A local HTTP endpoint (a merchant's webhook URL) that records what it is sent."""

    status: int = 200
    answer: bytes = b"ok"
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                receiver.received.append(Received(self.path, dict(self.headers), self.rfile.read(length)))
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, predicate, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            matches = [r for r in list(self.received) if predicate(r)]
            if matches:
                return matches
            time.sleep(0.1)
        raise AssertionError(f"nothing matching arrived within {timeout}s; got {len(self.received)} requests")


def make_merchant(name: str = "Test Merchant", *, with_public_key: bool = True, webhook_url: str = ""):
    private = crypto.rsa_generate()
    public_pem = crypto.public_key_pem(private)
    app, keys = app_create(
        merchant=merchant_get_or_create(name=name),
        name=f"{name} app",
        public_key_pem=public_pem if with_public_key else "",
        webhook_url=webhook_url,
    )
    return MerchantCredentials(
        app=app,
        test_secret_key=keys.test_secret_key,
        live_secret_key=keys.live_secret_key,
        private_pem=crypto.private_key_pem(private),
        public_pem=public_pem,
    )


def list_path(creds) -> str:
    return f"/v1/charges?app%5Bid%5D={creds.app.public_id}&limit=3"


def charge_payload(creds, **overrides):
    payload = {
        "order_no": "auth0001",
        "app": {"id": creds.app.public_id},
        "channel": "alipay_qr",
        "amount": 100,
        "currency": "cny",
        "client_ip": "127.0.0.1",
        "subject": "s",
        "body": "b",
    }
    payload.update(overrides)
    return payload


def assert_error(response, status: int, *, code: str | None = None, param: str | None = None):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert isinstance(error["type"], str) and isinstance(error["message"], str)
    if code:
        assert error["code"] == code
    else:
        assert "code" not in error or error["code"]
    if param:
        assert error["param"] == param
    return error
