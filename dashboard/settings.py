"""Ferry settings: everything that differs between a laptop and production comes from the
environment (see .env.example and the table in README)."""

import json
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from dashboard.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_map,
    env_paths,
    env_secret,
    env_str,
    private_dir,
    private_file,
    secret_from_env_or_file,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("FERRY_DATA_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = secret_from_env_or_file("SECRET_KEY", DATA_DIR / "secret_key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_tasks",
    "django_tasks_db",
    "dashboard",
    "inventory",
    "migrations_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "dashboard.middleware.RequestContextMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
ASGI_APPLICATION = "dashboard.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context_processors.ferry",
            ],
        },
    },
]

# Database: the embedded default is a SQLite file in WAL mode; production sets DATABASE_URL.
DATABASE_URL = env_str("DATABASE_URL", "")
# SQLite, whether the embedded default or given by URL: WAL lets readers go on while a
# worker writes; IMMEDIATE makes every write transaction take the lock up front (waiting up
# to the timeout) instead of failing with "database is locked" when it upgrades midway.
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
}
if DATABASE_URL:
    try:
        # No persistent per-thread connections: under ASGI a kept connection outlives the
        # thread that opened it and leaks (a load of 200 viewers exhausted PostgreSQL's
        # 100 connections). PostgreSQL gets a bounded pool instead (below).
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    except Exception as exc:  # dj_database_url raises several types for bad URLs
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # A bounded psycopg pool per process: requests wait for a free connection (up to
        # the timeout) instead of opening one each and running PostgreSQL out of clients.
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 2,
            # Django runs each request in a thread of its own under ASGI, holding a
            # connection for the whole request: with 10, requests queued under load.
            "max_size": env_int("FERRY_DB_POOL_SIZE", 20, minimum=1),
            "timeout": 30,
        }
        # Connections are checked when taken from the pool (Django passes psycopg's check
        # when health checks are on), so a database restart or a terminated backend costs
        # a reconnect, not an error.
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"]["OPTIONS"] = dict(SQLITE_OPTIONS)
        DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    # The embedded database holds sessions, token hashes and webhook secrets: only Ferry's
    # user may read the directory and the file (SQLite gives -wal/-shm the file's mode).
    private_dir(DATA_DIR)
    private_file(DATA_DIR / "ferry.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "ferry.sqlite3",
            "OPTIONS": dict(SQLITE_OPTIONS),
            # A file, not pytest's default in-memory database, so the test suite's real
            # servers and workers (separate processes) see the same data. Named per
            # process so concurrent test sessions never share one file.
            "TEST": {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Live events: in-process layer by default, Redis when REDIS_URL is set.
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py caps a pool at 100 connections; every subscriber joining or leaving
            # a group borrows one, so a busy web process needs more.
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "max_connections": env_int("FERRY_REDIS_MAX_CONNECTIONS", 1000, minimum=10),
                        # channels_redis blocks 5 s in BZPOPMIN on a quiet channel; redis-py 8
                        # reads with a 5 s socket timeout by default, which raced that answer
                        # and killed quiet websockets. Reads may take longer than a block.
                        "socket_timeout": 20,
                    }
                ]
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Background tasks (Django's tasks API through the django-tasks backport).
TASK_BACKEND = env_choice("FERRY_TASK_BACKEND", "db", ("db", "rq", "immediate"))
if TASK_BACKEND == "rq":
    if not REDIS_URL:
        raise ImproperlyConfigured("FERRY_TASK_BACKEND=rq needs REDIS_URL")
    INSTALLED_APPS.append("django_rq")
    RQ_QUEUES = {"default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600}}
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
elif TASK_BACKEND == "immediate":
    TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
else:
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_AGE = env_int("FERRY_SESSION_SECONDS", 8 * 3600, minimum=60)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        # Hashed (SHA-512) API tokens with an expiry (django-rest-knox), header "Token <key>".
        "knox.auth.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "dashboard.api.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "dashboard.api.pagination.FerryPagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "dashboard.api.errors.exception_handler",
}
# API tokens: shown once, stored as a hash, valid this many days (security review L4).
FERRY_API_TOKEN_DAYS = env_int("FERRY_API_TOKEN_DAYS", 30, minimum=1)
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=FERRY_API_TOKEN_DAYS),
    "AUTO_REFRESH": False,
    "TOKEN_LIMIT_PER_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Ferry API",
    "DESCRIPTION": "Inventory, migration plans, approvals, runs and the audit trail.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and Swagger UI map the whole API: signed-in people only (L6).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the vendored sidecar package: users run Ferry in closed networks.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a "state"/"status" choice set; name each enum explicitly.
    "ENUM_NAME_OVERRIDES": {
        "HostStateEnum": "inventory.models.Host.State",
        "VmStateEnum": "inventory.models.VirtualMachine.State",
        "PlanStatusEnum": "migrations_app.models.plan.MigrationPlan.Status",
        "PlanItemStatusEnum": "migrations_app.models.plan.PlanItem.Status",
        "PlanRunStatusEnum": "migrations_app.models.run.PlanRun.Status",
        "AttemptStatusEnum": "migrations_app.models.run.ItemAttempt.Status",
        "DeliveryStatusEnum": "migrations_app.models.notifications.NotificationDelivery.Status",
        "CampaignStatusEnum": "migrations_app.models.campaign.Campaign.Status",
        "HookKindEnum": "migrations_app.models.campaign.Hook.Kind",
    },
}

# Browser hardening. Pages carry no inline scripts (data travels in JSON blocks), so the
# policy allows scripts from Ferry's own origin only; Plotly sets inline styles on its
# SVG, hence 'unsafe-inline' for styles alone.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
CSRF_COOKIE_HTTPONLY = True
# FERRY_HTTPS: Ferry is reached over HTTPS (directly or behind a TLS proxy). Then cookies
# are secure-only, plain HTTP is redirected, and browsers are told to insist on HTTPS.
FERRY_HTTPS = env_bool("FERRY_HTTPS", False)
if FERRY_HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("FERRY_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("FERRY_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
FERRY_BEHIND_PROXY = env_bool("FERRY_BEHIND_PROXY", False)
if FERRY_BEHIND_PROXY:
    # Only behind a proxy that sets this header itself; otherwise clients could forge it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# /metrics: a scraper token (Authorization: Bearer …) and/or addresses allowed to scrape.
FERRY_METRICS_TOKEN = env_str("FERRY_METRICS_TOKEN", "")
FERRY_METRICS_ALLOW = env_list("FERRY_METRICS_ALLOW", ["127.0.0.1/32", "::1/128"])

# libvirt: how long a connection may take before the host is reported unreachable.
LIBVIRT_CONNECT_TIMEOUT = env_int("FERRY_LIBVIRT_TIMEOUT", 15, minimum=1)
# Which libvirt URIs hosts may be registered with (inventory.libvirt_uri; a URI is code, so
# every option of a connection is a server setting, never part of a host's URI):
# the client PKI directory for qemu+tls:// and the ssh key for qemu+ssh://;
FERRY_LIBVIRT_PKI_DIR = env_str("FERRY_LIBVIRT_PKI_DIR", "")
FERRY_LIBVIRT_SSH_KEYFILE = env_str("FERRY_LIBVIRT_SSH_KEYFILE", "")
# qemu:///system, the daemon on Ferry's own machine;
FERRY_ALLOW_LOCAL_LIBVIRT = env_bool("FERRY_ALLOW_LOCAL_LIBVIRT", False)
# named local sockets, "name=/path,name=/path": hosts register as qemu+unix://name/system;
FERRY_LIBVIRT_SOCKETS = env_map("FERRY_LIBVIRT_SOCKETS", {})
# the test driver (a demo: `make run`), reading node files in these directories only.
FERRY_DEMO = env_bool("FERRY_DEMO", False)
FERRY_DEMO_NODES = env_paths("FERRY_DEMO_NODES", [str(BASE_DIR / "inventory" / "demo" / "nodes")])

# Execution knobs (seconds unless said otherwise); every worker process reads them here.
FERRY_SAMPLE_SECONDS = env_float("FERRY_SAMPLE_SECONDS", 1.0, minimum=0.01)  # jobStats sampling
FERRY_LEASE_SECONDS = env_float("FERRY_LEASE_SECONDS", 30.0, minimum=1)  # claim w/o heartbeat
# A transfer that makes no progress this long is aborted.
FERRY_WATCHDOG_SECONDS = env_float("FERRY_WATCHDOG_SECONDS", 60.0, minimum=1)
# Budgets across all running plans (per host, per pool; a host or pool may set its own).
FERRY_HOST_MAX_OUTBOUND = env_int("FERRY_HOST_MAX_OUTBOUND", 8, minimum=1)
FERRY_HOST_MAX_INBOUND = env_int("FERRY_HOST_MAX_INBOUND", 8, minimum=1)
FERRY_POOL_MAX_COPIES = env_int("FERRY_POOL_MAX_COPIES", 4, minimum=1)
# Pre-copy has stalled when the data still to send found no new low for this long (s).
FERRY_STALL_WINDOW_SECONDS = env_float("FERRY_STALL_WINDOW_SECONDS", 6.0, minimum=1)
FERRY_TICK_SECONDS = env_float("FERRY_TICK_SECONDS", 10.0, minimum=0.5)  # reconcile/auto-start
# A queued attempt no worker claimed this long lost its task (a worker died holding it, the
# claim's transaction failed, a queue dropped it): the tick enqueues its task again.
FERRY_ORPHAN_SECONDS = env_float("FERRY_ORPHAN_SECONDS", 120.0, minimum=1)
# A libvirt call that does not answer this long fails its attempt (the worker keeps its
# lease meanwhile; see migrations_app.execution.guard).
FERRY_LIBVIRT_CALL_SECONDS = env_float("FERRY_LIBVIRT_CALL_SECONDS", 45.0, minimum=1)
# After Ferry's own connection to a source drops mid-migration: how long to try to reconnect
# and follow the job (the source libvirtd drives a p2p migration without Ferry); after a
# failure, how long to ask a host that cannot be reached again before deciding without it.
FERRY_RECONNECT_SECONDS = env_float("FERRY_RECONNECT_SECONDS", 60.0, minimum=1)
# A failed post-copy is retried with VIR_MIGRATE_POSTCOPY_RESUME this long; after it both
# sides stay paused and the item waits for an operator.
FERRY_POSTCOPY_RECOVER_SECONDS = env_float("FERRY_POSTCOPY_RECOVER_SECONDS", 600.0, minimum=1)
# A proof that a directory pool is one storage for two hosts is probed again when older.
FERRY_SHARE_PROOF_MAX_AGE_HOURS = env_float("FERRY_SHARE_PROOF_MAX_AGE_HOURS", 24.0, minimum=0)
# The queue is polled this often only when no wake-up came (dashboard.runtime.worker).
FERRY_WORKER_POLL_SECONDS = env_float("FERRY_WORKER_POLL_SECONDS", 1.0, minimum=0.01)
# Simulated seconds per real second on the rehearsal driver.
FERRY_REHEARSAL_SPEED = env_float("FERRY_REHEARSAL_SPEED", 20.0, minimum=0.001)
# Worker threads inside the web process (set by `manage.py serve` without Redis).
FERRY_EMBEDDED_WORKERS = env_int("FERRY_EMBEDDED_WORKERS", 0, minimum=0)

# History and measured load. Progress samples of finished attempts are kept this many days
# (0: forever); attempts, items and audit events are never pruned.
FERRY_SAMPLE_RETENTION_DAYS = env_int("FERRY_SAMPLE_RETENTION_DAYS", 90, minimum=0)
# Measured load (libvirt bulk domain statistics): sampled at every sync and every this many
# seconds by the housekeeping task (0: at syncs only), kept this many hours, averaged over
# the last this many minutes for placement and balance.
FERRY_LOAD_SAMPLE_SECONDS = env_int("FERRY_LOAD_SAMPLE_SECONDS", 300, minimum=0)
FERRY_LOAD_RETENTION_HOURS = env_int("FERRY_LOAD_RETENTION_HOURS", 48, minimum=1)
FERRY_LOAD_WINDOW_MINUTES = env_int("FERRY_LOAD_WINDOW_MINUTES", 60, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("FERRY_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# The audit chain's head, signed and kept outside the database (dashboard.audit.anchor):
# the signing key (never in the database), where heads are written, an extra file every
# anchor is appended to (another disk, a WORM mount), and how often at most (s).
FERRY_AUDIT_ANCHOR_KEY = secret_from_env_or_file(
    "FERRY_AUDIT_ANCHOR_KEY", DATA_DIR / "audit_anchor_key"
)
FERRY_AUDIT_ANCHOR_DIR = env_str("FERRY_AUDIT_ANCHOR_DIR", str(DATA_DIR / "audit-anchors"))
FERRY_AUDIT_ANCHOR_SINK = env_str("FERRY_AUDIT_ANCHOR_SINK", "")
FERRY_AUDIT_ANCHOR_SECONDS = env_float("FERRY_AUDIT_ANCHOR_SECONDS", 60.0, minimum=0)
# PostgreSQL: the role that owns the tables and runs `manage.py ferry_migrate` (DATABASE_URL
# is then Ferry's runtime role, which may only append to the audit trail).
FERRY_OWNER_DATABASE_URL = env_str("FERRY_OWNER_DATABASE_URL", "")

# Approvals: distinct approvers a plan needs, and hours an approval stays valid (0: forever).
FERRY_APPROVALS_REQUIRED = env_int("FERRY_APPROVALS_REQUIRED", 1, minimum=1)
FERRY_APPROVAL_TTL_HOURS = env_int("FERRY_APPROVAL_TTL_HOURS", 0, minimum=0)
# Change record PDFs (WeasyPrint costs a core for a second or more): per person per minute,
# and at once per process.
FERRY_PDF_PER_MINUTE = env_int("FERRY_PDF_PER_MINUTE", 6, minimum=1)
FERRY_PDF_CONCURRENT = env_int("FERRY_PDF_CONCURRENT", 2, minimum=1)
# Status links expire after this many days unless their creator chose otherwise.
FERRY_SHARE_LINK_DAYS = env_int("FERRY_SHARE_LINK_DAYS", 7, minimum=1)
# Public base URL for links in notifications and status links (empty: relative links).
FERRY_BASE_URL = env_str("FERRY_BASE_URL", "")

# Login lockout per account (never per address), and the backend that enforces it.
FERRY_LOGIN_MAX_FAILURES = env_int("FERRY_LOGIN_MAX_FAILURES", 5, minimum=1)
FERRY_LOGIN_LOCKOUT_SECONDS = env_int("FERRY_LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
# A soft limit per source address: more failures than this in one lockout period and the
# address is refused for the period (before any account is counted).
FERRY_LOGIN_MAX_FAILURES_PER_ADDRESS = env_int(
    "FERRY_LOGIN_MAX_FAILURES_PER_ADDRESS", 50, minimum=1
)
AUTHENTICATION_BACKENDS = ["dashboard.accounts.backend.LockoutModelBackend"]

# Single sign-on (docs/deployment.md "Single sign-on"). Local accounts (username and
# password) can be switched off once people sign in through the identity provider.
FERRY_LOCAL_LOGIN = env_bool("FERRY_LOCAL_LOGIN", True)
# IdP group -> Ferry roles: {"ferry-planners": "planner", "site-a-ops": ["operator@site-a"]}
# ("role@host group" holds the role for that host group only). Rewritten at every login.
FERRY_SSO_GROUP_ROLES = json.loads(env_str("FERRY_SSO_GROUP_ROLES", "") or "{}")
if not isinstance(FERRY_SSO_GROUP_ROLES, dict):
    raise ImproperlyConfigured("FERRY_SSO_GROUP_ROLES must be a JSON object.")
OIDC_RP_CLIENT_ID = env_str("FERRY_OIDC_CLIENT_ID", "")
FERRY_OIDC = bool(OIDC_RP_CLIENT_ID)
if FERRY_OIDC:
    OIDC_RP_CLIENT_SECRET = env_secret("FERRY_OIDC_CLIENT_SECRET")
    OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("FERRY_OIDC_AUTHORIZATION_ENDPOINT", "")
    OIDC_OP_TOKEN_ENDPOINT = env_str("FERRY_OIDC_TOKEN_ENDPOINT", "")
    OIDC_OP_USER_ENDPOINT = env_str("FERRY_OIDC_USERINFO_ENDPOINT", "")
    OIDC_OP_JWKS_ENDPOINT = env_str("FERRY_OIDC_JWKS_ENDPOINT", "")
    OIDC_RP_SIGN_ALGO = env_str("FERRY_OIDC_SIGN_ALGO", "RS256")
    OIDC_RP_SCOPES = env_str("FERRY_OIDC_SCOPES", "openid email profile groups")
    OIDC_VERIFY_SSL = env_bool("FERRY_OIDC_VERIFY_TLS", True)
    OIDC_USE_PKCE = True
    OIDC_CREATE_USER = True
    AUTHENTICATION_BACKENDS.append("dashboard.accounts.oidc.FerryOIDCBackend")
FERRY_OIDC_GROUPS_CLAIM = env_str("FERRY_OIDC_GROUPS_CLAIM", "groups")
FERRY_OIDC_LABEL = env_str("FERRY_OIDC_LABEL", "Sign in with single sign-on")
AUTH_LDAP_SERVER_URI = env_str("FERRY_LDAP_URI", "")
if AUTH_LDAP_SERVER_URI:
    import ldap
    from django_auth_ldap.config import GroupOfNamesType, LDAPSearch

    AUTH_LDAP_BIND_DN = env_str("FERRY_LDAP_BIND_DN", "")
    AUTH_LDAP_BIND_PASSWORD = env_secret("FERRY_LDAP_BIND_PASSWORD")
    AUTH_LDAP_USER_SEARCH = LDAPSearch(
        env_str("FERRY_LDAP_USER_BASE", ""), ldap.SCOPE_SUBTREE, "(uid=%(user)s)"
    )
    AUTH_LDAP_GROUP_SEARCH = LDAPSearch(
        env_str("FERRY_LDAP_GROUP_BASE", ""), ldap.SCOPE_SUBTREE, "(objectClass=groupOfNames)"
    )
    AUTH_LDAP_GROUP_TYPE = GroupOfNamesType()
    AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
    AUTH_LDAP_START_TLS = env_bool("FERRY_LDAP_START_TLS", False)
    AUTHENTICATION_BACKENDS.insert(0, "dashboard.accounts.ldap.FerryLDAPBackend")

# Notifications: webhook timeout, attempts before a delivery is given up, and email.
FERRY_WEBHOOK_TIMEOUT = env_int("FERRY_WEBHOOK_TIMEOUT", 10, minimum=1)
# Webhooks go to public addresses only; internal receivers an admin allows, by host name
# (".example.internal" for a whole domain) or network (10.20.0.0/16). Never link-local.
FERRY_WEBHOOK_ALLOW_HOSTS = env_list("FERRY_WEBHOOK_ALLOW_HOSTS", [])
# Campaign and plan hooks (docs/campaigns.md): commands run only from this directory (empty:
# command hooks are off), with no shell; a campaign polls its steps every N seconds.
FERRY_HOOK_COMMAND_DIR = env_str("FERRY_HOOK_COMMAND_DIR", "")
FERRY_CAMPAIGN_POLL_SECONDS = env_int("FERRY_CAMPAIGN_POLL_SECONDS", 2, minimum=1)
FERRY_NOTIFY_MAX_ATTEMPTS = env_int("FERRY_NOTIFY_MAX_ATTEMPTS", 6, minimum=1)

# Change-ticket gate (docs/change-gate.md): before a plan starts, ask the change-management
# system whether its ticket exists, is approved and its window contains now; write the
# outcome back. Off unless a kind is chosen. Calls follow the webhook outbound rules
# (FERRY_WEBHOOK_ALLOW_HOSTS for an internal instance).
FERRY_CHANGE_GATE = env_choice("FERRY_CHANGE_GATE", "off", ("off", "servicenow", "http"))
FERRY_CHANGE_GATE_URL = env_str("FERRY_CHANGE_GATE_URL", "").rstrip("/")
FERRY_CHANGE_GATE_USER = env_str("FERRY_CHANGE_GATE_USER", "")
FERRY_CHANGE_GATE_PASSWORD = env_str("FERRY_CHANGE_GATE_PASSWORD", "")
if not FERRY_CHANGE_GATE_PASSWORD and os.environ.get("FERRY_CHANGE_GATE_PASSWORD_FILE"):
    FERRY_CHANGE_GATE_PASSWORD = (
        Path(os.environ["FERRY_CHANGE_GATE_PASSWORD_FILE"]).read_text(encoding="utf-8").strip()
    )
FERRY_CHANGE_GATE_TOKEN = env_str("FERRY_CHANGE_GATE_TOKEN", "")
FERRY_CHANGE_GATE_TIMEOUT = env_int("FERRY_CHANGE_GATE_TIMEOUT", 10, minimum=1)
if FERRY_CHANGE_GATE != "off" and not FERRY_CHANGE_GATE_URL:
    raise ImproperlyConfigured("FERRY_CHANGE_GATE needs FERRY_CHANGE_GATE_URL")

# Audit forwarding (docs/deployment.md): every audit event also goes out as RFC 5424
# syslog, from a durable outbox drained in order by the workers. tls://host:6514 (the
# CA file verifies the receiver; cert/key for mutual TLS), or tcp:// / udp:// for a relay.
FERRY_AUDIT_SYSLOG_URL = env_str("FERRY_AUDIT_SYSLOG_URL", "")
FERRY_AUDIT_SYSLOG_CA_FILE = env_str("FERRY_AUDIT_SYSLOG_CA_FILE", "")
FERRY_AUDIT_SYSLOG_CERT_FILE = env_str("FERRY_AUDIT_SYSLOG_CERT_FILE", "")
FERRY_AUDIT_SYSLOG_KEY_FILE = env_str("FERRY_AUDIT_SYSLOG_KEY_FILE", "")
FERRY_AUDIT_SYSLOG_HOSTNAME = env_str("FERRY_AUDIT_SYSLOG_HOSTNAME", "")
FERRY_AUDIT_SYSLOG_POLL_SECONDS = env_float("FERRY_AUDIT_SYSLOG_POLL_SECONDS", 1.0, minimum=0.05)
EMAIL_HOST = env_str("FERRY_EMAIL_HOST", "")
EMAIL_PORT = env_int("FERRY_EMAIL_PORT", 25, minimum=1)
EMAIL_USE_TLS = env_bool("FERRY_EMAIL_TLS", False)
DEFAULT_FROM_EMAIL = env_str("FERRY_EMAIL_FROM", "ferry@localhost")
# Without a mail host, email notifications are written to the log instead of sent.
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
