"""Sending the app's tasks: through Celery when the host has a broker, never holding a request.

``RECOMMENDATIONS["TASKS"]`` says how tasks run:

- ``"celery"``: published to the host's broker (or run eagerly when the host set
  ``task_always_eager``).  Publishing waits at most ``PUBLISH_TIMEOUT`` seconds, whatever
  the transport does when the broker is down (kombu retries a refused Redis connection for
  about 6 s, and the result backend for 19 s more); after a failure, rescores are given up
  at once for ``BROKER_BACKOFF`` seconds, so that a burst of purchases does not pile up
  threads (a retrain, asked for by a person, always tries).
- ``"thread"``: run in one background thread of this process, one task after another.
- ``"inline"``: run at once in the caller.
- ``"auto"`` (the default): ``"celery"`` when the host configured a broker
  (``CELERY_BROKER_URL``, or ``broker_url`` on its Celery app) or eager tasks, else
  ``"thread"``, logged once.  A project without Celery settings is never made to publish
  to Celery's default ``amqp://localhost``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid

from celery import current_app

from .conf import app_settings

logger = logging.getLogger(__name__)

MODES = ("auto", "celery", "thread", "inline")
BROKER_BACKOFF = 15.0  # seconds without publishing rescores after the broker failed


class BrokerUnreachable(Exception):
    """The broker did not take the task (refused, failed, or slower than PUBLISH_TIMEOUT)."""


_state = threading.Lock()
_logged_auto = False
_down_until = 0.0
_down_reason = ""


def broker_configured() -> bool:
    conf = current_app.conf
    return bool(conf.task_always_eager or conf.broker_url or conf.broker_write_url)


def mode() -> str:
    """The mode in effect: ``"celery"``, ``"thread"`` or ``"inline"``."""
    global _logged_auto
    chosen = app_settings.TASKS
    if chosen != "auto":
        return chosen
    if broker_configured():
        return "celery"
    if not _logged_auto:
        _logged_auto = True
        logger.warning(
            "recommendations: no Celery broker is configured (CELERY_BROKER_URL), so retrains and "
            "rescores run in a background thread of this process. Configure a broker and run a worker "
            "in production, or set RECOMMENDATIONS['TASKS'] to silence this."
        )
    return "thread"


def send(task, args: list, *, back_off: bool = True, queue: str | None = None) -> str:
    """Run or queue ``task`` with ``args`` as the mode says; return its task id.

    Raises :class:`BrokerUnreachable` in ``"celery"`` mode when the broker did not take it
    within ``PUBLISH_TIMEOUT`` seconds, or (``back_off``) failed moments ago.  Never raises
    for a task run in a thread.  ``queue``: the Celery queue (None: the default queue).
    """
    how = mode()
    if how == "inline":
        return _run(task, args, str(uuid.uuid4()))
    if how == "thread":
        return _Runner.get().submit(task, args)
    if current_app.conf.task_always_eager:
        return task.apply_async(args=args).id
    return _publish(task, args, back_off, queue or None)


def _publish(task, args: list, back_off: bool, queue: str | None) -> str:
    global _down_until, _down_reason
    now = time.monotonic()
    if back_off and now < _down_until:
        raise BrokerUnreachable(f"the broker failed {BROKER_BACKOFF - (_down_until - now):.0f} s ago ({_down_reason})")
    timeout = float(app_settings.PUBLISH_TIMEOUT)
    outcome: dict = {}
    done = threading.Event()

    def publish() -> None:
        try:
            # ignore_result: nothing waits for these results, and a result backend that is
            # down would add its own reconnection attempts to the publish.
            outcome["id"] = task.apply_async(
                args=args, ignore_result=True, retry=True, **({"queue": queue} if queue else {}),
                retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
            ).id  # fmt: skip
        except Exception as exc:
            outcome["error"] = exc
        finally:
            done.set()

    # A thread with a deadline: kombu's own timeouts differ per transport and stack up over
    # its retries, and none of them bounds the whole send.  A send that outlives the deadline
    # may still reach the broker later; the tasks are written so that a late copy does no
    # harm (a retrain claims its run once, a rescore is idempotent).
    threading.Thread(target=publish, name=f"recommendations-send-{task.name}", daemon=True).start()
    if not done.wait(timeout):
        reason = f"no answer within {timeout:g} s"
    elif "error" in outcome:
        exc = outcome["error"]
        reason = f"{type(exc).__name__}: {exc}"
    else:
        return outcome["id"] or ""
    with _state:
        _down_until, _down_reason = time.monotonic() + BROKER_BACKOFF, reason
    raise BrokerUnreachable(reason)


def broker_recovered() -> None:
    """Forget a broker failure (tests; a worker that saw the broker come back)."""
    global _down_until
    _down_until = 0.0


def _run(task, args: list, task_id: str) -> str:
    """Run ``task`` here and now, as a worker would (its request, retries); log a failure."""
    result = task.apply(args=args, task_id=task_id, throw=False)
    if result.failed():
        logger.error("recommendations task %s%r failed:\n%s", task.name, tuple(args), result.traceback)
    return task_id


class _Runner:
    """One daemon thread per process that runs the tasks sent in ``"thread"`` mode in order.

    Written by hand rather than with ``concurrent.futures``: its workers are joined when the
    interpreter exits, which would hold a server's shutdown (or its reloader) for the length
    of a retrain.  A daemon thread just stops; a retrain it was running is then marked
    failed by the stale-run check, as when a worker dies.
    """

    _instance: _Runner | None = None

    def __init__(self) -> None:
        self.jobs: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="recommendations-tasks", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> _Runner:
        with _state:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = cls()
            return cls._instance

    def submit(self, task, args: list) -> str:
        task_id = str(uuid.uuid4())
        self.jobs.put((task, args, task_id))
        return task_id

    def _loop(self) -> None:
        from django.db import close_old_connections, connections

        while True:
            task, args, task_id = self.jobs.get()
            try:
                close_old_connections()
                _run(task, args, task_id)
            except Exception:
                logger.exception("recommendations task %s%r failed in the background thread", task.name, tuple(args))
            finally:
                connections.close_all()
                self.jobs.task_done()

    def join(self) -> None:
        """Wait until every task sent so far has run (tests)."""
        self.jobs.join()
