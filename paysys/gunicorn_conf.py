"""gunicorn settings for paysys's web processes: `gunicorn -c python:paysys.gunicorn_conf …`.

Options given on the command line beside it take precedence (`make run` and the benchmarks set
the bind address, the name and, in the benchmarks, the worker layout).
"""

import gc

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
    `worker_connections` was set.

    A gthread worker accepts whenever it holds fewer than `worker_connections` connections
    (gunicorn's default: 1000), and a kept-alive connection stays with the worker that accepted
    it. Clients that keep their connections open, as the pingpp SDK does, then pile onto one
    worker while another idles: 13 of 16 on one worker in bench/api_charge.py, where their
    charges took twice as long as the other worker's. With the cap, a worker that is full leaves
    new connections to the others, and one with more than KEEPALIVE_SLACK idle kept-alive
    connections closes the next one after its answer, so the client reconnects to whichever
    worker has room.
    """
    cfg = server.cfg
    if cfg.worker_class_str == "gthread" and cfg.worker_connections == cfg.settings["worker_connections"].default:
        cfg.set("worker_connections", cfg.threads + KEEPALIVE_SLACK)


def post_worker_init(worker):
    """Once a worker has loaded paysys, its long-lived objects (modules, settings, URL patterns,
    model metadata) are moved out of the garbage collector's generations: full collections then
    scan only what requests allocate, instead of pausing a worker for tens of milliseconds."""
    gc.collect()
    gc.freeze()
