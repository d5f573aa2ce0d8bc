"""Change records (of a plan, of a campaign) as PDF: the printable HTML page rendered by
WeasyPrint (pure Python plus Pango, no browser needed).

Rendering costs a core for a second or more, so it is limited (security review L8): at most
FERRY_PDF_PER_MINUTE renders per person per minute, and FERRY_PDF_CONCURRENT at once per
process; beyond that the answer is 429.
"""

import threading

from django.conf import settings
from django.core.cache import cache
from django.template.loader import render_to_string

from dashboard.errors import TooManyRequests
from migrations_app.reports.campaign_record import campaign_record_build
from migrations_app.reports.change_record import change_record_build

_rendering = threading.BoundedSemaphore(int(getattr(settings, "FERRY_PDF_CONCURRENT", 2)))


def _record_html(template: str, build, obj, key: str, request, for_print: bool) -> str:
    # Audit events as the request's user may read them.
    user = getattr(request, "user", None) if request is not None else None
    record = build(obj, user=user)
    context = {"record": record, key: obj, "for_print": for_print}
    return render_to_string(template, context, request=request)


def change_record_html(plan, *, request=None, for_print: bool = False) -> str:
    """The change record page of a plan as HTML."""
    template = "migrations_app/change_record.html"
    return _record_html(template, change_record_build, plan, "plan", request, for_print)


def campaign_record_html(campaign, *, request=None, for_print: bool = False) -> str:
    """The change record page of a campaign as HTML."""
    template = "migrations_app/campaign_change_record.html"
    return _record_html(template, campaign_record_build, campaign, "campaign", request, for_print)


def _per_minute_allowed(request) -> bool:
    user = getattr(request, "user", None)
    key = f"ferry:pdf:{getattr(user, 'pk', None) or 'anonymous'}"
    cache.add(key, 0, timeout=60)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=60)
        count = 1
    return count <= int(getattr(settings, "FERRY_PDF_PER_MINUTE", 6))


def _pdf(render_html, request) -> bytes:
    """Render a printable page to PDF under the per-person and per-process limits."""
    from weasyprint import HTML  # imported late: loading Pango costs ~0.3 s

    if not _per_minute_allowed(request):
        raise TooManyRequests("Too many change record PDFs in a minute: try again shortly.")
    if not _rendering.acquire(blocking=False):
        raise TooManyRequests("Change record PDFs are being rendered: try again in a moment.")
    try:
        html = render_html()
        # The page embeds its CSS and loads no images: with no base URL, nothing is fetched.
        return HTML(string=html).write_pdf()
    finally:
        _rendering.release()


def change_record_pdf(plan, *, request=None) -> bytes:
    """The change record as PDF bytes; TooManyRequests when the limits are reached."""
    return _pdf(lambda: change_record_html(plan, request=request, for_print=True), request)


def campaign_record_pdf(campaign, *, request=None) -> bytes:
    """A campaign's change record as PDF bytes (the same limits as a plan's)."""
    return _pdf(lambda: campaign_record_html(campaign, request=request, for_print=True), request)
