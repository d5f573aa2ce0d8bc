"""API errors people can read: every failure is a JSON body with a `detail` message."""

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger("ferry.api")


class Conflict(exceptions.APIException):
    """The object's state does not allow the action (HTTP 409)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's current state does not allow this action."
    default_code = "conflict"


def exception_handler(exc, context):
    """DRF's handler, plus Django validation errors as 400 and a readable 503 for the DB."""
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
