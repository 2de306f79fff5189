"""The app's tables: training runs and the lists each run produced.

Every list row belongs to a run; exactly one successful run is live at a time (a partial
unique index), and readers only ever read the live run's rows, so switching runs is one
``UPDATE`` of two ``TrainingRun`` rows inside a transaction.

The item foreign keys point at ``RECOMMENDATIONS["ITEM_MODEL"]``, resolved from settings
when the app loads (the migration reads the same setting, as Django's own migrations do
for ``AUTH_USER_MODEL``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .conf import item_model_label
from .querysets import RecommendationQuerySet, SimilarItemQuerySet, TrainingRunQuerySet


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")
        TIMED_OUT = "timed_out", _("timed out")
        NOT_ENOUGH_DATA = "not_enough_data", _("not enough data")

    class Decision(models.TextChoices):
        MODEL = "model", _("model")
        MODEL_UNEVALUATED = "model (not evaluated)", _("model (not evaluated)")
        POPULARITY = "popularity", _("popularity (no candidate beat it)")

    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    stage = models.CharField(_("stage"), max_length=20, blank=True)
    progress = models.FloatField(_("progress"), default=0.0)
    trigger = models.CharField(_("requested from"), max_length=20, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    task_id = models.CharField(_("task id"), max_length=64, blank=True)
    worker = models.CharField(_("worker"), max_length=200, blank=True)
    # True while queued or running, NULL afterwards: a unique index on it lets at most one
    # run be in flight, whatever process asks (the database is the lock).
    active = models.BooleanField(null=True, default=True, unique=True, editable=False)
    created = models.DateTimeField(_("requested"), auto_now_add=True)
    started = models.DateTimeField(_("started"), null=True, blank=True)
    finished = models.DateTimeField(_("finished"), null=True, blank=True)
    heartbeat = models.DateTimeField(_("last sign of life"), null=True, blank=True)
    # True for the live run, NULL for every other: a plain unique index then allows one live
    # run on every database (MySQL has no partial indexes), as for ``active`` below.
    is_live = models.BooleanField(_("live"), null=True, default=None, unique=True)
    published = models.DateTimeField(_("went live"), null=True, blank=True)
    pruned = models.BooleanField(_("rows pruned"), default=False)
    decision = models.CharField(_("decision"), max_length=32, choices=Decision.choices, blank=True)
    data_until = models.DateTimeField(_("latest interaction"), null=True, blank=True)
    counts = models.JSONField(_("counts"), default=dict, blank=True)
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    metrics = models.JSONField(_("metrics"), default=dict, blank=True)
    stage_seconds = models.JSONField(_("seconds per stage"), default=dict, blank=True)
    artifact = models.CharField(_("model artifact"), max_length=255, blank=True)
    # What was written to the artifact (size, SHA-256, each array's dtype and shape): a
    # loader checks the file against it before reading (storage.load_artifact).
    artifact_record = models.JSONField(_("model artifact's record"), default=dict, blank=True, editable=False)
    error = models.TextField(_("error"), blank=True)

    objects = TrainingRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        get_latest_by = "created"
        verbose_name = _("training run")
        verbose_name_plural = _("training runs")
        permissions = [("retrain", _("Can start a retrain of the recommendations"))]

    def __str__(self) -> str:
        return f"Run #{self.pk} ({self.get_status_display()})"

    @property
    def duration(self) -> float | None:
        if self.started and self.finished:
            return (self.finished - self.started).total_seconds()
        return None

    def metric(self, who: str, name: str | None = None) -> float | None:
        """A metric of ``who`` ("model" or "popularity"), default precision@k."""
        k = self.metrics.get("k", 10)
        return (self.metrics.get(who) or {}).get(name or f"precision@{k}")

    def as_json(self) -> dict:
        return {
            "id": self.pk,
            "status": self.status,
            "decision": self.decision,
            "live": bool(self.is_live),
            "error": self.error,
            "created": self.created.isoformat() if self.created else None,
            "started": self.started.isoformat() if self.started else None,
            "finished": self.finished.isoformat() if self.finished else None,
            "counts": self.counts,
            "hyperparameters": self.params.get("hyperparameters") or {"lightfm": self.params.get("lightfm", {})},
            "candidate": self.params.get("candidate"),
            "seconds": self.stage_seconds,
            "metrics": self.metrics,
        }


class ListKind(models.TextChoices):
    PERSONAL = "personal", _("for a customer")
    POPULAR = "popular", _("popular")
    RECENT = "recent", _("popular lately")


class Recommendation(models.Model):
    """One item in a list: a customer's (``user`` set) or a popular list (``user`` empty)."""

    # Built for writing a run's million rows fast (see storage.RunRows):
    # - No database-level foreign keys: PostgreSQL would check each row at commit, which
    #   costs more than writing them.  Deleting a user or an item through the ORM still
    #   deletes their rows (Django cascades in Python); a run leaves out users and items
    #   deleted before it writes; the read query joins the items, so a row whose item
    #   vanished otherwise is never shown.
    # - One index, the one reads use: (user, run).  It also finds the popular lists (user
    #   NULL: B-tree indexes hold NULLs) and serves deleting a user.  Deleting an item scans
    #   (rare, and done by staff), rather than every run paying for an item index.
    # - On PostgreSQL the table is partitioned by run (migration 0003): a run's rows go into
    #   a table of their own, indexed once they are all in, attached when the run goes
    #   live, and dropped when it is pruned.  Those rows' ids are ``run id · 2³² + n``
    #   (storage.RunRows), which the ids the sequence hands out stay below.
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        db_constraint=False, db_index=False,
    )  # fmt: skip
    item = models.ForeignKey(
        item_model_label(), on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    kind = models.CharField(max_length=10, choices=ListKind.choices, default=ListKind.PERSONAL)
    rank = models.PositiveIntegerField()
    score = models.FloatField()

    objects = RecommendationQuerySet.as_manager()

    class Meta:
        ordering = ["run", "user", "rank"]
        verbose_name = _("recommendation")
        verbose_name_plural = _("recommendations")
        indexes = [models.Index(fields=["user", "run"], name="rec_user_run")]

    def __str__(self) -> str:
        return f"#{self.rank} {self.item_id} for {self.user_id or self.kind}"


class PopularManager(models.Manager.from_queryset(RecommendationQuerySet)):
    def get_queryset(self):
        return super().get_queryset().filter(user__isnull=True)


class PopularItem(Recommendation):
    """The popular lists: recommendations for nobody in particular (same table)."""

    objects = PopularManager()

    class Meta:
        proxy = True
        verbose_name = _("popular item")
        verbose_name_plural = _("popular items")


class SimilarItem(models.Model):
    # As Recommendation: no database-level keys, one index (item, run), partitioned by run.
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False)
    item = models.ForeignKey(item_model_label(), on_delete=models.CASCADE, related_name="+", db_constraint=False,
                             db_index=False)  # fmt: skip
    similar = models.ForeignKey(item_model_label(), on_delete=models.CASCADE, related_name="+", db_constraint=False,
                                db_index=False)  # fmt: skip
    rank = models.PositiveIntegerField()
    score = models.FloatField()

    objects = SimilarItemQuerySet.as_manager()

    class Meta:
        ordering = ["run", "item", "rank"]
        verbose_name = _("similar item")
        verbose_name_plural = _("similar items")
        indexes = [models.Index(fields=["item", "run"], name="sim_item_run")]

    def __str__(self) -> str:
        return f"#{self.rank} {self.similar_id} like {self.item_id}"


class ScoringShard(models.Model):
    """One slice of a run's customers, scored and written by a ``scoring`` task.

    The training task saves each shard's inputs (its customers' rows, what they own, their
    metadata profiles) as an artifact and creates these rows; a shard's rows and its
    ``done`` status are committed in one transaction, so a worker lost mid-shard leaves
    nothing behind, and a second delivery of a finished shard does nothing.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="shards")
    number = models.PositiveIntegerField(_("shard"))
    customers = models.PositiveIntegerField(_("customers"))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    worker = models.CharField(_("worker"), max_length=200, blank=True)
    started = models.DateTimeField(_("started"), null=True, blank=True)
    finished = models.DateTimeField(_("finished"), null=True, blank=True)
    rows = models.PositiveIntegerField(_("rows written"), default=0)
    seconds = models.JSONField(_("seconds per stage"), default=dict, blank=True)
    artifact = models.CharField(_("inputs"), max_length=255, blank=True)
    artifact_record = models.JSONField(default=dict, blank=True, editable=False)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        ordering = ["run_id", "number"]  # not "run": that would join (and lock) the run's row
        verbose_name = _("scoring shard")
        verbose_name_plural = _("scoring shards")
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="shard_run_number")]

    def __str__(self) -> str:
        return f"Shard {self.number} of run #{self.run_id} ({self.get_status_display()})"
