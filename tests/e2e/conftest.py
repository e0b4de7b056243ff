"""A real Celery worker beside Django's live server: the `celery_worker` fixture and its helpers
live in tests/conftest.py (shared with tests/faults); re-exported here for existing imports."""

from tests.conftest import ROOT, test_database_url

__all__ = ["ROOT", "test_database_url"]
