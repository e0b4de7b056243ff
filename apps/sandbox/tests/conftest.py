import http.server
import threading
from urllib.parse import parse_qsl

import pytest
from alipay import AliPay

from apps.sandbox import services


@pytest.fixture(autouse=True)
def celery_eager():
    """State changes enqueue notifications on commit; run them in-process instead of on a worker."""
    from paysys.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def alipay_app(transactional_db):
    return services.alipay_app_create(name="test shop")


@pytest.fixture
def gateway_url(live_server):
    return f"{live_server.url}/sandbox/alipay/gateway.do"


def make_client(gateway_url: str, app_id: str, app_private_key: str, alipay_public_key: str) -> AliPay:
    client = AliPay(
        appid=app_id,
        app_private_key_string=app_private_key,
        alipay_public_key_string=alipay_public_key,
        sign_type="RSA2",
    )
    client._gateway = gateway_url
    return client


@pytest.fixture
def sdk(alipay_app, gateway_url) -> AliPay:
    return make_client(gateway_url, alipay_app.app_id, alipay_app.app_private_key, alipay_app.alipay_public_key)


class Receiver:
    """A merchant's notify_url: records each form POST and answers from `answers` (then `success`)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: list[bytes] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(
                    {
                        "content_type": self.headers.get("Content-Type"),
                        "body": body,
                        "form": dict(parse_qsl(body.decode(), keep_blank_values=True)),
                    }
                )
                answer = receiver.answers.pop(0) if receiver.answers else b"success"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify/alipay"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()
