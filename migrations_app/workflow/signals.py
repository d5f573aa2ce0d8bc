"""Signals the workflow services send when a plan's run must follow its status.

Sent synchronously inside the service's transaction, after the status change: a receiver
that creates the run commits or rolls back with the start, and an exception in a
receiver undoes the transition. Receivers live in migrations_app.execution.receivers and
are connected in MigrationsAppConfig.ready(). Each signal carries `plan` (the locked
row), `actor`, and `reason` (start: the override reason; pause and cancel: why).
"""

from django.dispatch import Signal

plan_started = Signal()
plan_paused = Signal()
plan_resumed = Signal()
plan_cancelled = Signal()
