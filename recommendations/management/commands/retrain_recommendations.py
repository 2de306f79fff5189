"""Retrain the recommendations: in this process (--sync) or through Celery."""

import json
from json import dumps

from django.core.management.base import BaseCommand, CommandError

from recommendations import services, tasks


class Command(BaseCommand):
    help = "Retrain the recommendation model and publish every customer's lists."

    def add_arguments(self, parser):
        parser.add_argument("--sync", action="store_true", help="run in this process instead of enqueueing")
        parser.add_argument("--no-evaluate", action="store_true", help="skip the time holdout and candidate choice")
        parser.add_argument("--json", action="store_true", help="print the run as one JSON object")

    def handle(self, *args, sync, no_evaluate, json: bool, **options):
        evaluate = False if no_evaluate else None
        if sync:
            run = services.retrain(evaluate=evaluate, trigger="command")
        else:
            run = services.start_run(trigger="command")
            tasks.retrain.delay(run.pk, evaluate)
            run.refresh_from_db()
            if run.status in (run.Status.QUEUED, run.Status.RUNNING):
                self.stdout.write(f"Queued run #{run.pk}." if not json else dumps({"id": run.pk, "status": run.status}))
                return
        self.report(run, as_json=json)

    def report(self, run, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(run.as_json(), indent=None, default=str))
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
        if run.status != run.Status.SUCCEEDED:
            raise CommandError(run.error or f"Run #{run.pk} ended {run.status}.")
