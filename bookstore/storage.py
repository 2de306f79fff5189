"""Static files for the demo: hashed and compressed once collected, and never a 500 before.

Django's manifest storage raises for every ``{% static %}`` until ``collectstatic`` has run,
which turned every HTML page into a 500 on a fresh production set-up.  Until the manifest
exists, this storage hands out plain URLs (WhiteNoise serves them from the apps' static
folders: ``WHITENOISE_USE_FINDERS``) and says once in the log, and in ``manage.py check``,
what to run.
"""

from __future__ import annotations

import logging

from django.core.files.storage import FileSystemStorage
from whitenoise.storage import CompressedManifestStaticFilesStorage

logger = logging.getLogger("bookstore")


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    _warned = False

    def collected(self) -> bool:
        return self.exists(self.manifest_name)

    def url(self, name, force=False):
        try:
            return super().url(name, force)
        except ValueError as exc:  # no manifest, or a file it does not list
            if not StaticFilesStorage._warned:
                StaticFilesStorage._warned = True
                logger.error("Static files are not collected (%s): run `python manage.py collectstatic --noinput`. "
                             "Serving them unhashed meanwhile.", exc)  # fmt: skip
            return FileSystemStorage.url(self, name)
