"""The engine's unit tests run Celery tasks eagerly, in-process, on both paths; the real
worker is exercised by tests/services/."""

import pytest

from bookstore.celery import app


@pytest.fixture(autouse=True)
def eager_tasks():
    before = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = before
