"""Admin of the dashboard app: registered by its sub-packages (imported here so Django's
admin autodiscovery finds them)."""

from dashboard.accounts import admin as accounts_admin  # noqa: F401
from dashboard.audit import admin as audit_admin  # noqa: F401
