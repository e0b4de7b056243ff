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


def post_worker_init(worker):
    """Once a worker has loaded paysys, its long-lived objects (modules, settings, URL patterns,
    model metadata) are moved out of the garbage collector's generations: full collections then
    scan only what requests allocate, instead of pausing a worker for tens of milliseconds."""
    gc.collect()
    gc.freeze()
