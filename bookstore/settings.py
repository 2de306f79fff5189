"""Settings of the demo bookstore, read from the environment.

Environment variables:

``DATABASE_URL``  database, default a SQLite file ``db.sqlite3`` in the project.
``REDIS_URL``     Celery broker and result backend, and the Django cache.  Unset: Celery
                  runs tasks eagerly in-process and the cache is local memory.
``SECRET_KEY``    required when ``DEBUG`` is off.
``DEBUG``         ``1``/``true`` for local development; off by default.
``ALLOWED_HOSTS`` comma-separated host names, default ``127.0.0.1,localhost``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from recommendations.schedule import beat_schedule

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean environment variable (1/0, true/false, yes/no, on/off)."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    value = value.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"Environment variable {name}={value!r} is not a boolean (use 1 or 0).")


def env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment, or DEBUG=1 for local development."
        )
    SECRET_KEY = "django-insecure-local-development-only"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "bookstore.apps.BookstoreConfig",
    "recommendations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "bookstore.urls"
WSGI_APPLICATION = "bookstore.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "bookstore.context_processors.store",
            ],
        },
    },
]

# Database -------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
        # A persistent connection the server dropped (a restart, a failover, an idle timeout)
        # is checked before a request uses it, instead of failing that request.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo writes while it serves (page views, orders); wait for the lock rather than
    # fail with "database is locked", and let readers run beside the writer.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Customers are Django users; a project-owned user model from day one so that the store can
# grow customer fields without a painful migration later.
AUTH_USER_MODEL = "bookstore.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("STATIC_ROOT", str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": os.environ.get("MEDIA_ROOT", str(BASE_DIR / "media"))},
    },
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "bookstore.storage.StaticFilesStorage"  # WhiteNoise's manifest storage, no 500 before collectstatic
        ),
    },
}
MEDIA_ROOT = STORAGES["default"]["OPTIONS"]["location"]
# Without collectstatic (tests, a quick local run) WhiteNoise serves from the finders.
WHITENOISE_USE_FINDERS = True
WHITENOISE_MANIFEST_STRICT = False

# Redis, Celery and the cache ------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "").strip()

if REDIS_URL:
    CACHES = {
        "default": {
            # django-redis, because it can treat a Redis outage as cache misses
            # (IGNORE_EXCEPTIONS): the pages keep rendering from the database.
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "bookstore"),
            "TIMEOUT": 3600,
            "OPTIONS": {
                "IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1,
                # JSON, not pickle: a value read from Redis never runs code in the web process
                # (whoever can write one key would otherwise own every server).
                "SERIALIZER": "bookstore.cache.StrictJSONSerializer",
            },
        }
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
    DJANGO_REDIS_LOGGER = "bookstore.cache"
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "bookstore",
            "TIMEOUT": 3600,
        }
    }

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or None
# Without a broker, run tasks in-process so that the demo needs no server; the bookstore
# app logs this once at start-up.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
# A worker consumes the default queue and the retrain's two (make worker: -Q celery,training,scoring);
# CELERY_QUEUE=name renames all three (name, name.training, name.scoring), e.g. for a test's own worker.
CELERY_QUEUE = os.environ.get("CELERY_QUEUE", "")
CELERY_TASK_DEFAULT_QUEUE = CELERY_QUEUE or "celery"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Retrains are long: a worker takes one task at a time and acknowledges it once done.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Fail fast (and tell the user) when the broker is down, instead of blocking a request.
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A retrain not acknowledged this long is handed to a worker again (Redis emulates
    # acknowledgements); the duplicate finds its run claimed and does nothing.
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", str(2 * 3600))),
    # How often kombu looks for such messages: every interval × throttle seconds.
    "unacked_restore_interval": int(os.environ.get("CELERY_RESTORE_INTERVAL", "10")),
    "unacked_restore_throttle": int(os.environ.get("CELERY_RESTORE_THROTTLE", "10")),
    "socket_connect_timeout": 3,
    "socket_timeout": 10,
}
CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL = 30
# Nightly retrain (03:00 by default) and the stale-run check; see docs/operations.md.
CELERY_BEAT_SCHEDULE = beat_schedule(
    hour=int(os.environ.get("RETRAIN_HOUR", "3")), minute=int(os.environ.get("RETRAIN_MINUTE", "0"))
)

# The store ------------------------------------------------------------------------------
# A reload of the same book page by the same customer within this window counts once.
BOOKSTORE_VIEW_DEDUP_SECONDS = int(os.environ.get("BOOKSTORE_VIEW_DEDUP_SECONDS", "1800"))
BOOKSTORE_PAGE_SIZE = 24

# Security (production: DEBUG off) -------------------------------------------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY", False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "bookstore": {"level": os.environ.get("LOG_LEVEL", "INFO")},
        "recommendations": {"level": os.environ.get("LOG_LEVEL", "INFO")},
    },
}

# Recommendations ------------------------------------------------------------------------
# The reusable app reads the store through this one setting; see docs/configuration.md.
RECOMMENDATIONS = {
    "ITEM_MODEL": "bookstore.Book",
    "ITEM_KEY": "product",
    "ITEM_FILTER": {"available": True},
    "ITEM_SELECT_RELATED": ["author"],
    "ITEM_FEATURES": {
        "author": "category",
        "genres": "tags",
        "format": "category",
        "price": "number",
        "publication_date": "year",
    },
    "SOURCES": [
        {
            "name": "purchases",
            "model": "bookstore.OrderLine",
            "user": "order__user",
            "item": "book",
            "weight": "quantity",
            "timestamp": "order__created",
            "scale": 1.0,
            "exclude": True,  # never recommend a book the customer bought
        },
        {
            "name": "views",
            "model": "bookstore.Access",
            "user": "user",
            "item": "book",
            "weight": "count",
            "timestamp": "first_seen",
            "scale": 0.3,
        },
    ],
    "LIGHTFM": {"num_threads": int(os.environ.get("RECOMMENDATIONS_THREADS", "1"))},
    # Picks stored per customer (an export of N per customer needs at least N).
    "LIST_SIZE": int(os.environ.get("RECOMMENDATIONS_LIST_SIZE", "20")),
    # Without Redis there is no worker: retrains and rescores run in a background thread of the
    # web process, so "Retrain now" answers at once (eager tasks would hold the request).
    "TASKS": "celery" if REDIS_URL else "thread",
    # Model artifacts: a private directory, never MEDIA_ROOT (default: BASE_DIR/var/recommendations).
    "ARTIFACT_ROOT": os.environ.get("RECOMMENDATIONS_ARTIFACT_ROOT") or None,
    "QUEUES": {kind: f"{CELERY_QUEUE}.{kind}" if CELERY_QUEUE else kind for kind in ("training", "scoring")},
}
