"""manage.py ferry_migrate: migrate as the owner role, then grant the runtime role (M3).

With FERRY_OWNER_DATABASE_URL set (PostgreSQL), the migrations run as that role, which
then owns every table; the role of DATABASE_URL (Ferry's runtime role) gets what
dashboard.runtime.db_roles grants: no UPDATE, DELETE or TRUNCATE on the audit table, and,
not being the owner, no way to disable its trigger. Without it this is `migrate` (the
embedded SQLite default, or a single-role PostgreSQL that docs/deployment.md advises
against).
"""

import dj_database_url
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from dashboard.runtime.db_roles import runtime_grants_apply


class Command(BaseCommand):
    help = "Run the migrations as the owner role and grant Ferry's runtime role its rights."

    def add_arguments(self, parser):
        parser.add_argument("--runtime-role", default="", help="default: DATABASE_URL's user")
        parser.add_argument(
            "--grants-only", action="store_true", help="only (re)apply the runtime grants"
        )

    def handle(self, *args, runtime_role="", grants_only=False, **options):
        connection = connections["default"]
        runtime = runtime_role or connection.settings_dict.get("USER", "")
        owner_url = getattr(settings, "FERRY_OWNER_DATABASE_URL", "")
        if connection.vendor != "postgresql":
            if not grants_only:
                call_command("migrate", interactive=False, verbosity=options["verbosity"])
            return
        if owner_url:
            owner = dj_database_url.parse(owner_url)
            connection.close()
            if hasattr(connection, "close_pool"):
                connection.close_pool()
            for key in ("USER", "PASSWORD", "HOST", "PORT", "NAME"):
                connection.settings_dict[key] = owner.get(key, connection.settings_dict[key])
            connection.settings_dict.get("OPTIONS", {}).pop("pool", None)
        if not grants_only:
            call_command("migrate", interactive=False, verbosity=options["verbosity"])
        owner_role = connection.settings_dict.get("USER", "")
        if not runtime or runtime == owner_role:
            raise CommandError(
                "Ferry's runtime role is the owner of its tables: it could disable the audit "
                "trail's trigger. Set FERRY_OWNER_DATABASE_URL to a separate owner role (see "
                "docs/deployment.md), or name the runtime role with --runtime-role."
            )
        runtime_grants_apply(connection, runtime)
        self.stdout.write(
            f"Migrated as {owner_role}; runtime role {runtime} may append to the audit trail "
            "but not change, delete, truncate or un-trigger it."
        )
