"""A WSGI app that answers, after a short wait, with the id of the worker process serving it."""

import os
import time

ANSWER_AFTER = 0.5


def application(environ, start_response):
    time.sleep(ANSWER_AFTER)  # holds the connection open while the others are accepted
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
