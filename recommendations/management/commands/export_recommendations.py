"""Export the live run's lists as CSV on stdout: username,product,rank,score."""

import csv

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from recommendations.conf import app_settings
from recommendations.models import Recommendation, TrainingRun

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    """Spreadsheet-safe text: a cell that starts like a formula is prefixed with a quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


class Command(BaseCommand):
    help = "Write every customer's live recommendations as CSV (username,product,rank,score), rank 1 best."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None, help="at most this many items per customer")

    def handle(self, *args, limit, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        if not TrainingRun.objects.live().exists():
            raise CommandError("No live recommendations yet: run retrain_recommendations first.")
        username = f"user__{get_user_model().USERNAME_FIELD}"
        product = f"item__{app_settings.ITEM_KEY}"
        rows = Recommendation.objects.live().filter(user__isnull=False)
        if limit:
            rows = rows.filter(rank__lte=limit)
        rows = rows.order_by("user_id", "rank").values_list(username, product, "rank", "score")
        writer = csv.writer(self.stdout, lineterminator="\n")
        writer.writerow(["username", "product", "rank", "score"])
        for name, key, rank, score in rows.iterator(chunk_size=app_settings.CHUNK_SIZE):
            writer.writerow([safe_cell(name), safe_cell(key), rank, f"{score:.6f}"])
