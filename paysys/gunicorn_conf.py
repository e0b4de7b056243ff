"""gunicorn settings for paysys's web processes: `gunicorn -c python:paysys.gunicorn_conf …`.

Options given on the command line beside it take precedence (`make run` and the benchmarks set
the bind address, the name and, in the benchmarks, the worker layout).
"""

import gc

from gunicorn.config import WorkerConnections
from gunicorn.workers.gthread import ThreadWorker

DEFAULT_WORKER_CONNECTIONS = WorkerConnections.default

wsgi_app = "paysys.wsgi:application"
worker_class = "gthread"
workers = 2
threads = 8
graceful_timeout = 10

# Connections a gthread worker holds beyond one per thread: room for kept-alive connections
# between their requests.
KEEPALIVE_SLACK = 2


def on_starting(server):
    """Caps each gthread worker's open connections at its threads + KEEPALIVE_SLACK, unless
    `worker_connections` was set to something other than gunicorn's default (1000).

    A gthread worker accepts whenever it holds fewer than `worker_connections` connections, and a
    kept-alive connection stays with the worker that accepted it. Clients that keep their
    connections open, as the pingpp SDK does, then pile onto one worker while another idles: 13
    of 16 on one worker in bench/api_charge.py, where their charges took twice as long as the
    other worker's. With the cap, a full worker leaves new connections to the others; and a
    worker already holding KEEPALIVE_SLACK idle kept-alive connections answers the next request
    with `Connection: close`, so that client reconnects to whichever worker has room.
    """
    cfg = server.cfg
    if issubclass(server.worker_class, ThreadWorker) and cfg.worker_connections == DEFAULT_WORKER_CONNECTIONS:
        cfg.set("worker_connections", cfg.threads + KEEPALIVE_SLACK)


on_reload = on_starting  # a reload (SIGHUP) reads the settings afresh


def post_worker_init(worker):
    """Once a worker has loaded paysys, its long-lived objects (modules, settings, URL patterns,
    model metadata) are moved out of the garbage collector's generations: full collections then
    scan only what requests allocate, instead of pausing a worker for tens of milliseconds."""
    gc.collect()
    gc.freeze()
