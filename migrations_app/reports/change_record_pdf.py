"""The change record as PDF: the printable HTML page rendered by WeasyPrint (pure Python
plus Pango, no browser needed)."""

from django.template.loader import render_to_string

from migrations_app.reports.change_record import change_record_build


def change_record_html(plan, *, request=None, for_print: bool = False) -> str:
    """The change record page as HTML."""
    record = change_record_build(plan)
    return render_to_string(
        "migrations_app/change_record.html",
        {"record": record, "plan": plan, "for_print": for_print},
        request=request,
    )


def change_record_pdf(plan, *, request=None) -> bytes:
    """The change record as PDF bytes."""
    from weasyprint import HTML  # imported late: loading Pango costs ~0.3 s

    html = change_record_html(plan, request=request, for_print=True)
    # The page embeds its CSS and loads no images: with no base URL, nothing is fetched.
    return HTML(string=html).write_pdf()
