"""A default Celery beat schedule; import it into your settings (it imports no Django).

    from recommendations.schedule import beat_schedule
    CELERY_BEAT_SCHEDULE = beat_schedule(hour=3, minute=0)
"""

from celery.schedules import crontab


def beat_schedule(hour: int = 3, minute: int = 0, stale_check_minutes: int = 5) -> dict:
    """A nightly retrain at ``hour:minute`` (the worker's timezone, ``CELERY_TIMEZONE``), and
    a check for runs whose worker died every ``stale_check_minutes``."""
    return {
        "recommendations-nightly-retrain": {
            "task": "recommendations.retrain",
            "schedule": crontab(hour=hour, minute=minute),
            "options": {"expires": 3600},
        },
        "recommendations-stale-runs": {
            "task": "recommendations.mark_stale_runs",
            "schedule": stale_check_minutes * 60.0,
            "options": {"expires": stale_check_minutes * 60},
        },
    }
