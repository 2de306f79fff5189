"""A second host project: different model and field names, string product keys, auth.User.

It proves that `recommendations` trains and serves through settings alone.
"""

import os

import dj_database_url

SECRET_KEY = "other-host-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.otherhost.urls"
ALLOWED_HOSTS = ["testserver", "127.0.0.1"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "tests.otherhost.shop",
    "recommendations",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {"default": dj_database_url.parse(os.environ.get("DATABASE_URL") or "sqlite:///:memory:")}
# Its own test database: it runs while the main suite holds the main one.
DATABASES["default"]["TEST"] = {"NAME": "test_otherhost" if DATABASES["default"]["ENGINE"].endswith("postgresql") else None}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": "/tmp/otherhost-media"}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
CELERY_TASK_ALWAYS_EAGER = True

RECOMMENDATIONS = {
    "ITEM_MODEL": "shop.Product",
    "ITEM_KEY": "sku",
    "ITEM_FILTER": {"in_stock": True},
    "ITEM_SELECT_RELATED": ["category"],
    "ITEM_FEATURES": {"category": "category", "labels": "tags", "cost": "number", "released": "year"},
    "SOURCES": [
        {
            "name": "purchases",
            "model": "shop.Purchase",
            "user": "buyer",
            "item": "product",
            "weight": "amount",
            "timestamp": "at",
            "exclude": True,
        },
        {
            "name": "page views",
            "model": "shop.PageView",
            "user": "visitor",
            "item": "product",
            "weight": "hits",
            "timestamp": "when",
            "scale": 0.5,
        },
    ],
    "LIGHTFM": {"epochs": 15, "no_components": 16},
    "EVALUATION": {"k": 5},
    "LIST_SIZE": 6,
}
