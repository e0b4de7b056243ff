import gc
import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paysys.settings")

app = Celery("paysys")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _freeze_loaded_objects(**_):
    """As the gunicorn workers do (paysys/gunicorn_conf.py): the objects loaded before the first
    task leave the garbage collector's generations, so full collections scan only what tasks
    allocate."""
    gc.collect()
    gc.freeze()
