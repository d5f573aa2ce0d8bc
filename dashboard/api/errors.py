"""API errors people can read: every failure is a JSON body with a `detail` message.

The one translation of service errors into HTTP answers (configured as DRF's
EXCEPTION_HANDLER): InputError → 400, StateConflict → 409, TooManyRequests → 429,
Django's ValidationError → 400, Django's PermissionDenied → 403 (by DRF), a database
outage → 503. Views call services and
let these errors pass; they never build error responses themselves.
"""

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from dashboard.errors import InputError, StateConflict, TooManyRequests

logger = logging.getLogger("ferry.api")


def exception_handler(exc, context):
    """DRF's handler, plus Ferry's service errors, Django validation errors and the DB."""
    if isinstance(exc, TooManyRequests):
        return Response({"detail": str(exc)}, status=status.HTTP_429_TOO_MANY_REQUESTS)
    if isinstance(exc, StateConflict | InputError):
        set_rollback()
        code = status.HTTP_409_CONFLICT if isinstance(exc, StateConflict) else 400
        return Response({"detail": str(exc)}, status=code)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is None and isinstance(exc, DatabaseError):
        logger.exception("database error in API view")
        return Response(
            {"detail": "The database is unavailable or busy; nothing was changed. Retry."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    return response
