import gc

from celery.signals import worker_process_init


def test_a_celery_worker_process_freezes_what_it_loaded_out_of_the_collector():
    gc.unfreeze()
    try:
        worker_process_init.send(sender=None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
