"""Settings of the OpenID provider the SSO tests sign in through: django-oidc-provider in
its own Django process with its own SQLite database (OP_DATA_DIR), never Ferry's settings.

Test-only: a fixed secret, a fast password hasher, plain HTTP on loopback.
"""

import os
from pathlib import Path

DATA = Path(os.environ.get("OP_DATA_DIR", "/tmp/ferry-test-op"))
SECRET_KEY = "ferry-test-oidc-provider-not-a-secret"  # noqa: S105 - a throwaway test provider
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "oidc_provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.sso.provider.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).parent / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA / "op.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
# Ferry runs on the same address (another port): cookies are not separated by port.
SESSION_COOKIE_NAME = "op_sessionid"
CSRF_COOKIE_NAME = "op_csrftoken"
LOGIN_URL = "/accounts/login/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
OIDC_USERINFO = "tests.sso.provider.claims.userinfo"
OIDC_EXTRA_SCOPE_CLAIMS = "tests.sso.provider.claims.GroupsScopeClaims"
