"""Settings of the benchmark's processes: the demo's settings, plus two overrides.

``BENCH_CACHE_PREFIX``  a private key prefix for the cache, so that a benchmark sharing a Redis
                        server with someone else neither reads their keys nor needs to flush.
``BENCH_TEMPLATE_DIR``  a template directory searched first; ``bench/run.py`` puts there a copy
                        of ``bookstore/book_detail.html`` without the two recommendation tags,
                        to serve "the same page without the boxes".

Used by ``bench/run.py`` only (``DJANGO_SETTINGS_MODULE=bench.settings_bench``).
"""

from __future__ import annotations

import copy
import os

from bookstore.settings import *  # noqa: F403
from bookstore.settings import CACHES as _CACHES
from bookstore.settings import TEMPLATES as _TEMPLATES

CACHES = copy.deepcopy(_CACHES)
if os.environ.get("BENCH_CACHE_PREFIX"):
    for _conf in CACHES.values():
        _conf["KEY_PREFIX"] = os.environ["BENCH_CACHE_PREFIX"]

TEMPLATES = copy.deepcopy(_TEMPLATES)
if os.environ.get("BENCH_TEMPLATE_DIR"):
    TEMPLATES[0]["DIRS"] = [os.environ["BENCH_TEMPLATE_DIR"], *TEMPLATES[0]["DIRS"]]

# ``BENCH_EPOCHS``, ``BENCH_ACTIVE_DAYS``, ``BENCH_SHARD_SIZE``: one measurement's own settings
# (a retrain that counts the rows ACTIVE_DAYS stores needs no full fit; the shard size at xlarge).
RECOMMENDATIONS = copy.deepcopy(RECOMMENDATIONS)  # noqa: F405
if os.environ.get("BENCH_EPOCHS"):
    RECOMMENDATIONS["LIGHTFM"]["epochs"] = int(os.environ["BENCH_EPOCHS"])
if os.environ.get("BENCH_ACTIVE_DAYS"):
    RECOMMENDATIONS["ACTIVE_DAYS"] = float(os.environ["BENCH_ACTIVE_DAYS"])
if os.environ.get("BENCH_SHARD_SIZE"):
    RECOMMENDATIONS["SHARD_SIZE"] = int(os.environ["BENCH_SHARD_SIZE"])
