"""Warm a web process before it serves: import every view and compile Ferry's templates.

Django does both lazily, on the first request that needs them, so the first requests to a
freshly started process paid ~100 ms more each, all at once when a crowd arrives (browsers
reconnecting after a restart).
"""

import logging
import time

from django.conf import settings
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.template.loader import get_template
from django.urls import get_resolver

logger = logging.getLogger("ferry.warmup")


def warm_up() -> float:
    """Import the URL configuration and compile the project's templates; seconds spent."""
    started = time.perf_counter()
    get_resolver().url_patterns  # noqa: B018 - imports every view module
    get_resolver()._populate()
    for base in settings.TEMPLATES[0]["DIRS"]:
        for path in sorted(base.rglob("*.html")):
            try:
                get_template(str(path.relative_to(base)))
            except (TemplateDoesNotExist, TemplateSyntaxError):  # a broken one fails later
                logger.exception("template %s does not compile", path)
    return time.perf_counter() - started
