"""Models of the dashboard app, one topic per sub-package; imported here so Django
registers them under the app label "dashboard" (their tables keep their names)."""

from dashboard.accounts.models import (  # noqa: F401
    AccountIdentity,
    LoginThrottle,  # noqa: F401
    RoleGrant,
)
from dashboard.audit.models import AuditEvent  # noqa: F401
