"""Admin: training runs (with "Retrain now" and a metrics chart), read-only lists."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy as _

from . import services
from .charts import metrics_chart
from .conf import app_settings
from .models import PopularItem, Recommendation, ScoringShard, SimilarItem, TrainingRun

STATUS_COLOURS = {
    "succeeded": "#2a9d8f",
    "running": "#e9c46a",
    "queued": "#8d99ae",
    "failed": "#c0392b",
    "timed_out": "#c0392b",
    "not_enough_data": "#8d99ae",
}


def request_retrain(request: HttpRequest, modeladmin) -> None:
    """Queue a retrain for the admin user and say what happened (never a 500)."""
    try:
        run = services.request_retrain(trigger="admin", user=request.user)
    except services.AlreadyRunning as exc:
        run = exc.run
        modeladmin.message_user(
            request, _("A retrain is already running (run #%(id)s).") % {"id": run.pk if run else "?"}, messages.WARNING
        )
        return
    except services.BrokerUnavailable as exc:
        modeladmin.message_user(
            request,
            _("Could not queue the retrain: the task broker is unreachable. Run #%(id)s records the attempt.")
            % {"id": exc.run.pk},
            messages.ERROR,
        )
        return
    if run.status in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING):
        modeladmin.message_user(request, _("Retrain queued (run #%(id)s).") % {"id": run.pk}, messages.SUCCESS)
    elif run.status == TrainingRun.Status.SUCCEEDED:
        modeladmin.message_user(request, _("Run #%(id)s finished and is live.") % {"id": run.pk}, messages.SUCCESS)
    else:
        modeladmin.message_user(
            request, _("Run #%(id)s ended %(status)s: %(error)s") % {"id": run.pk, "status": run.get_status_display(), "error": run.error},
            messages.ERROR,
        )


class LiveFilter(admin.SimpleListFilter):
    """Yes / No on a run's ``is_live``: True for the live run and NULL, never False, for every
    other one (see models.TrainingRun), so the stock boolean filter finds nothing under "No"."""

    title = _("live")
    parameter_name = "live"
    field = "is_live"

    def lookups(self, request, model_admin):
        return (("yes", _("Yes")), ("no", _("No")))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(**{self.field: True})
        if self.value() == "no":
            return queryset.exclude(**{self.field: True})
        return queryset


class LiveRunFilter(LiveFilter):
    """The same for the rows of the lists: those of the live run, or of the others."""

    title = _("live run")
    field = "run__is_live"


class ScoringShardInline(admin.TabularInline):
    """A run's scoring shards: which worker took each, how often, how long, and any error."""

    model = ScoringShard
    fields = ("number", "customers", "status", "attempts", "worker", "started", "finished", "rows", "seconds_short",
              "error")  # fmt: skip
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    verbose_name_plural = _("scoring shards")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=_("seconds"))
    def seconds_short(self, obj: ScoringShard) -> str:
        return ", ".join(f"{name} {float(value):.2f}" for name, value in (obj.seconds or {}).items()) or "–"


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    # Narrow enough for a 1366 px screen with both sidebars open: the live flag rides in the
    # status column, the three precisions share one, and who asked is a filter (and on the
    # run's page), not a column.
    list_display = ("id", "status_badge", "started_short", "duration_display", "precisions")
    list_filter = ("status", LiveFilter, "trigger")
    date_hierarchy = "created"
    actions = ["retrain_now"]
    inlines = [ScoringShardInline]
    change_list_template = "admin/recommendations/trainingrun/change_list.html"
    fieldsets = (
        (None, {"fields": ("status", "stage", "progress", "is_live", "decision", "error")}),
        (_("When"), {"fields": ("created", "started", "finished", "published", "heartbeat", "data_until")}),
        (_("Who and where"), {"fields": ("trigger", "requested_by", "task_id", "worker", "artifact", "pruned")}),
        (_("Stages"), {"fields": ("stages_table",)}),
        (_("Metrics"), {"fields": ("metrics_table",)}),
        (_("Counts and parameters"), {"fields": ("counts_pretty", "params_pretty")}),
    )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # A run's lists go by pruning (storage.prune drops their partitions and its artifact),
        # not row by row from here: until then the run stays, and so does the live one.
        if obj is not None and (obj.is_live or obj.active or self._has_lists(obj)):
            return False  # live, queued or running (its worker would lose it), or still has lists
        return super().has_delete_permission(request, obj)

    @staticmethod
    def _has_lists(run: TrainingRun) -> bool:
        if run.pruned:
            return False
        return any(model.objects.filter(run_id=run.pk).exists() for model in (Recommendation, SimilarItem))

    def has_retrain_permission(self, request) -> bool:
        return request.user.has_perm("recommendations.retrain")

    def get_readonly_fields(self, request, obj=None):
        return [f for fs in self.fieldsets for f in fs[1]["fields"]]

    # -- list columns -----------------------------------------------------------------------
    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj):
        colour = STATUS_COLOURS.get(obj.status, "#8d99ae")
        label = title = obj.get_status_display()
        if obj.status == TrainingRun.Status.RUNNING and obj.stage:
            label = f"{obj.stage} {obj.progress:.0%}"  # the badge's colour says "running"
            title = f"{title}: {label}"
        badge = format_html('<span title="{}" style="color:#fff;background:{};padding:2px 6px;border-radius:9px">{}'
                            '</span>', title, colour, label)  # fmt: skip
        live = format_html(
            ' <span style="color:#2a9d8f;border:1px solid #2a9d8f;padding:1px 4px;border-radius:9px">{}</span>',
            _("live"),
        ) if obj.is_live else ""  # fmt: skip
        return format_html('<span style="white-space:nowrap">{}{}</span>', badge, live)

    @admin.display(description=_("started"), ordering="started")
    def started_short(self, obj):
        if obj.started is None:
            return "–"
        when = localtime(obj.started)
        return format_html('<span title="{}" style="white-space:nowrap">{}</span>',
                           date_format(when, "DATETIME_FORMAT"), date_format(when, "M j H:i"))  # fmt: skip

    @admin.display(description=_("duration"))
    def duration_display(self, obj):
        seconds = obj.duration
        if seconds is None:
            return "–"
        if seconds < 100:
            return f"{seconds:.1f} s"
        return f"{seconds / 60:.0f} min" if seconds < 6000 else f"{seconds / 3600:.1f} h"

    @admin.display(description=_("p@k model · pop. · new"))
    def precisions(self, obj):
        """Precision@k of the model and of popularity on the time holdout, and of the model on
        the new books held out; each titled in full."""
        m = obj.metrics or {}
        k = m.get("k", 10)
        values = [
            (_("model p@k"), obj.metric("model")),
            (_("popularity p@k"), obj.metric("popularity")),
            (_("new books p@k"), (m.get("cold") or {}).get(f"precision@{k}")),
        ]
        if all(value is None for _label, value in values):
            return "–"
        cells = format_html_join(
            " · ", '<span title="{}">{}</span>',
            ((label, f"{value:.3f}" if value is not None else "–") for label, value in values),
        )  # fmt: skip
        return format_html('<span style="white-space:nowrap">{}</span>', cells)

    @admin.display(description=_("coverage"))
    def coverage(self, obj):
        value = obj.metric("model", "coverage")
        return f"{value:.1%}" if value is not None else "–"

    # -- detail ---------------------------------------------------------------------------------
    @admin.display(description=_("seconds per stage"))
    def stages_table(self, obj):
        if not obj.stage_seconds:
            return "–"
        rows = format_html_join("", "<tr><td>{}</td><td style='text-align:right'>{}</td></tr>",
                                ((k, f"{v:.2f}") for k, v in obj.stage_seconds.items()))  # fmt: skip
        return format_html("<table><tr><th>stage</th><th>seconds</th></tr>{}</table>", rows)

    @admin.display(description=_("metrics"))
    def metrics_table(self, obj):
        m = obj.metrics or {}
        if not m.get("model") and not m.get("trials"):
            return format_html("<pre>{}</pre>", json.dumps(m, indent=2)) if m else "–"
        k = m.get("k", 10)
        return format_html(
            "{}<h3 style='margin-top:1em'>{}</h3>{}<h3 style='margin-top:1em'>{}</h3>{}",
            self._holdouts_table(m, k), _("Search"), self._trials_table(m, k),
            _("Choice"), format_html("<p>{}: {} · {}</p>", _("decision"), m.get("decision", "–"),
                                     (m.get("chosen") or {}).get("candidate", "–")),
        )  # fmt: skip

    def _holdouts_table(self, m: dict, k: int):
        """Known books (time holdout) and new books (cold-item holdout), side by side."""
        p = f"precision@{k}"
        model, pop, cold, overall = m.get("model") or {}, m.get("popularity") or {}, m.get("cold") or {}, m.get("overall") or {}
        share = m.get("new_items_share") or {}
        new = m.get("new_items") or {}

        def fmt(value, pattern="{:.4f}"):
            return pattern.format(value) if isinstance(value, (int, float)) else "–"

        rows = [
            (_("chosen model"), fmt(model.get(p)), fmt(cold.get(p)), fmt(overall.get(p)), fmt(overall.get(f"{p} without new books"))),
            (_("popularity"), fmt(pop.get(p)), fmt(0.0) if cold.get(p) is not None else "–", "–", "–"),
        ]
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        note = cold.get("skipped") or format_html(
            "{} {} · {} {} · {} {} · {} {}",
            _("held-out new books:"), cold.get("books", "–"), _("their buyers:"), cold.get("buyers", "–"),
            _("share of slots:"), fmt(cold.get("share_of_slots"), "{:.1%}"),
            _("served:"), format_html("{} ({} {}, {} {})", new.get("mode", "–"), _("at most"),
                                      fmt(share.get("served"), "{:.0%}"), _("boost"), fmt(share.get("boost"))),
        )  # fmt: skip
        return format_html(
            "<table><tr><th></th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{}</table><p>{}</p>",
            format_html("{}<br>{}", _("known books"), p), format_html("{}<br>{}", _("new books"), p),
            format_html("{}<br>{}", _("overall"), p), _("overall without new books"), body, note,
        )  # fmt: skip

    def _trials_table(self, m: dict, k: int):
        cols = [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", "coverage"]
        head = format_html_join("", "<th>{}</th>", ((c,) for c in ["#", _("configuration"), _("family"), _("state"),
                                                                      _("epochs"), _("seconds"), *cols]))  # fmt: skip
        body = []
        for row in m.get("trials", []):
            cells = [row.get(c) for c in cols]
            body.append((row.get("trial", ""), row.get("candidate", ""), row.get("family", ""), row.get("state", ""),
                         row.get("epochs") or "–", row.get("seconds", ""),
                         *[f"{c:.4f}" if isinstance(c, float) else (c if c is not None else "–") for c in cells]))  # fmt: skip
        for row in m.get("blends", []):
            body.append(("", format_html("{} ({})", " + ".join(row.get("parts", [])), f"{row.get('weight', 0):.2f}"), "blend", "",
                         "", "", *[f"{row[c]:.4f}" if isinstance(row.get(c), float) else "–" for c in cols]))  # fmt: skip
        rows = format_html_join("", "<tr>" + "<td>{}</td>" * (len(cols) + 6) + "</tr>", body)
        return format_html("<table><tr>{}</tr>{}</table>", head, rows)

    @admin.display(description=_("counts"))
    def counts_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.counts, indent=2))

    @admin.display(description=_("parameters"))
    def params_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.params, indent=2))

    # -- retrain: an action and a button --------------------------------------------------------
    @admin.action(description=_("Retrain now"), permissions=["retrain"])
    def retrain_now(self, request, queryset):
        request_retrain(request, self)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("retrain/", self.admin_site.admin_view(self.retrain_view), name="%s_%s_retrain" % info),
            *super().get_urls(),
        ]

    def retrain_view(self, request):
        """POST only (CSRF-protected by the admin), behind the ``recommendations.retrain`` permission."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_retrain_permission(request):
            raise PermissionDenied
        request_retrain(request, self)
        return HttpResponseRedirect(reverse("admin:recommendations_trainingrun_changelist"))

    def changelist_view(self, request, extra_context=None):
        runs = list(TrainingRun.objects.finished().exclude(metrics={}).order_by("-created")[:30])[::-1]
        extra_context = {
            **(extra_context or {}),
            "can_retrain": self.has_retrain_permission(request),
            "retrain_url": reverse("admin:recommendations_trainingrun_retrain"),
            "chart": metrics_chart(runs),
            # While a run is queued or running, the list refreshes itself: its stage and progress.
            "refresh_seconds": 5 if TrainingRun.objects.active().exists() else None,
        }
        return super().changelist_view(request, extra_context)


class ReadOnlyAdmin(admin.ModelAdmin):
    """The lists are derived data: seen here, never added, changed or deleted on their own.

    A row goes with the customer or item it was made from, and deleting those is for whoever
    may delete *them*: their own delete page asks that, then
    ``django.contrib.admin.utils.get_deleted_objects`` asks this admin about each row, which
    must not veto it.  So a row may be deleted (as a consequence), the model may not: no
    "delete selected" action, no delete link, and a row's delete page answers 403.
    """

    show_full_result_count = False
    # The list shows every field; no row links to a page of its own (the list tables have no
    # index on id: see models.Recommendation).
    list_display_links = None

    @admin.display(description=_("score"), ordering="score")
    def rounded_score(self, obj):
        return f"{obj.score:.3f}"

    def get_search_results(self, request, queryset, search_term):
        # SQLite refuses a LIKE pattern over 50,000 bytes; no username or item key is that long.
        if len(search_term) > 1000:
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return obj is not None

    def delete_view(self, request, object_id, extra_context=None):
        raise PermissionDenied

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "show_delete": False})


@admin.register(Recommendation)
class RecommendationAdmin(ReadOnlyAdmin):
    list_display = ("user", "rank", "item", "rounded_score", "kind", "run")
    list_filter = ("kind", LiveRunFilter)
    list_select_related = ("user", "item", "run")
    search_fields = (f"user__{get_user_model().USERNAME_FIELD}",)
    raw_id_fields = ("user", "item", "run")

    def get_queryset(self, request):
        return super().get_queryset(request).filter(user__isnull=False)


@admin.register(PopularItem)
class PopularItemAdmin(ReadOnlyAdmin):
    list_display = ("kind", "rank", "item", "rounded_score", "run")
    list_filter = ("kind", LiveRunFilter)
    list_select_related = ("item", "run")
    raw_id_fields = ("item", "run")


@admin.register(SimilarItem)
class SimilarItemAdmin(ReadOnlyAdmin):
    list_display = ("item", "rank", "similar", "rounded_score", "run")
    list_filter = (LiveRunFilter,)
    list_select_related = ("item", "similar", "run")
    search_fields = (f"item__{app_settings.ITEM_KEY}",)
    raw_id_fields = ("item", "similar", "run")
