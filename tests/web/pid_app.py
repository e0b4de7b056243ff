"""A WSGI app that answers with the id of the worker process serving it: at once on `/`, after a
wait on `/hold` (which keeps the connection busy while others are opened)."""

import os
import time

HOLD_SECONDS = 1.0


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/hold":
        time.sleep(HOLD_SECONDS)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
