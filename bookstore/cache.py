"""The demo's Redis cache serializer: JSON, and a value that is not JSON is a miss.

A shared cache is not trusted: django-redis's default serializer is pickle, so whoever can
write one key to Redis would run code in every web process that reads it.  JSON cannot run
code; and a value that does not decode (planted, or written by another program) counts as
absent, so the page reads from the database instead of answering 500.
"""

from __future__ import annotations

import logging

from django_redis.serializers.json import JSONSerializer

logger = logging.getLogger(__name__)


class StrictJSONSerializer(JSONSerializer):
    def loads(self, value: bytes):
        try:
            return super().loads(value)
        except (UnicodeDecodeError, ValueError) as exc:
            logger.warning("A cache value that is not JSON was ignored (%s: %.60r)", type(exc).__name__, value[:60])
            return None
