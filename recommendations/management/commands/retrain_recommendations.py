"""Retrain the recommendations: queue it for a Celery worker, or run it here with --sync
(and without a broker: see ``RECOMMENDATIONS["TASKS"]``)."""

import json
import time

from django.core.management.base import BaseCommand, CommandError

from recommendations import dispatch, services
from recommendations.models import TrainingRun


class Command(BaseCommand):
    help = (
        "Retrain the recommendation model and publish every customer's lists. Queues the "
        "retrain for a Celery worker unless --sync."
    )

    def add_arguments(self, parser):
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--sync", action="store_true", help="run in this process instead of queueing")
        mode.add_argument("--wait", action="store_true", help="queue, then follow the run to its end")
        parser.add_argument("--no-evaluate", action="store_true", help="skip the time holdout and candidate choice")
        parser.add_argument("--json", action="store_true", help="print the run as one JSON object")
        parser.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
        parser.add_argument("--if-none-live", action="store_true", help="do nothing when a run is already live")

    def handle(self, *args, sync, wait, no_evaluate, json: bool, timeout, if_none_live, **options):
        evaluate = False if no_evaluate else None
        if if_none_live and TrainingRun.objects.live().exists():
            self.stdout.write("A run is already live: nothing to do.")
            return
        if not sync and dispatch.mode() == "thread":
            # A background thread of this command would die with it: without a broker, the
            # retrain runs here (as --sync).
            self.stderr.write("No task broker is configured: retraining in this process.")
            sync = True
        try:
            if sync:
                run = services.retrain(evaluate=evaluate, trigger="command")
            else:
                run = services.request_retrain(trigger="command", evaluate=evaluate)
        except services.AlreadyRunning as exc:
            raise CommandError(f"Already running: {exc}") from exc
        except services.BrokerUnavailable as exc:
            raise CommandError(str(exc)) from exc
        if not sync and run.status in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING):
            if not wait:
                self.stdout.write(
                    json_dumps({"id": run.pk, "status": run.status}) if json else f"Queued run #{run.pk}."
                )
                return
            run = self.follow(run, timeout, quiet=json)
        self.report(run, as_json=json)

    def follow(self, run: TrainingRun, timeout: float | None, *, quiet: bool) -> TrainingRun:
        """Print the run's stage and progress until it ends."""
        started, last = time.monotonic(), None
        while run.status in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING):
            if timeout is not None and time.monotonic() - started > timeout:
                raise CommandError(f"Run #{run.pk} is still {run.status} after {timeout:.0f} s.")
            services.mark_stale_runs()
            time.sleep(1.0)
            run.refresh_from_db()
            state = (run.status, run.stage, round(run.progress, 2))
            if state != last and not quiet:
                self.stderr.write(f"run #{run.pk}: {run.status} {run.stage} {run.progress:.0%}")
                last = state
        return run

    def report(self, run, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json_dumps(run.as_json()))
        else:
            model, base = run.metric("model"), run.metric("popularity")
            line = f"Run #{run.pk}: {run.get_status_display()}"
            if run.decision:
                line += f", serving {run.get_decision_display()}"
            if model is not None:
                line += f"; precision@{run.metrics.get('k', 10)} model {model:.4f} vs popularity {base:.4f}"
            if run.stage_seconds:
                line += "; " + ", ".join(f"{k} {v:.1f}s" for k, v in run.stage_seconds.items())
            self.stdout.write(line)
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(run.error or f"Run #{run.pk} ended {run.status}.")


def json_dumps(value) -> str:
    return json.dumps(value, default=str)
