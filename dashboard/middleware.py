"""Request middleware: a request id on every request and response, bound for the audit trail."""

import uuid

from dashboard.request_context import RequestContext, reset_context, set_context


class RequestContextMiddleware:
    """Gives each request an id (kept from X-Request-ID when sane) and binds it for services."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if incoming.isascii() and 0 < len(incoming) <= 64 else ""
        request_id = request_id or uuid.uuid4().hex
        # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy
        # rewrites it, and the audit trail must not record what an attacker typed.
        token = set_context(
            RequestContext(
                request_id=request_id,
                source_address=request.META.get("REMOTE_ADDR", ""),
                user_agent=request.headers.get("User-Agent", "")[:300],
            )
        )
        request.request_id = request_id
        try:
            response = self.get_response(request)
        finally:
            reset_context(token)
        response["X-Request-ID"] = request_id
        return response
