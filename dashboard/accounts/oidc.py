"""OpenID Connect login through mozilla-django-oidc, with roles from the groups claim.

An IdP account is found by its subject (`sub`), never by e-mail: a local account with the
same address stays a different account (and four eyes counts the two as one person when
the address is verified; dashboard.accounts.people).
"""

from django.conf import settings
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from dashboard.accounts.models import AccountIdentity
from dashboard.accounts.sso import sso_login_sync, sso_username


class FerryOIDCBackend(OIDCAuthenticationBackend):
    """Finds accounts by subject and sets their roles from the groups claim at every login."""

    def filter_users_by_claims(self, claims):
        subject = claims.get("sub")
        if not subject:
            return self.UserModel.objects.none()
        return self.UserModel.objects.filter(
            identity__source=AccountIdentity.Source.OIDC, identity__subject=subject
        )

    def verify_claims(self, claims):
        return bool(claims.get("sub"))

    def create_user(self, claims):
        username = sso_username("oidc", claims["sub"], claims.get("preferred_username", ""))
        user = self.UserModel.objects.create_user(username, email=claims.get("email", ""))
        user.set_unusable_password()
        user.save(update_fields=["password"])
        return self.update_user(user, claims)

    def update_user(self, user, claims):
        groups = claims.get(settings.FERRY_OIDC_GROUPS_CLAIM) or []
        if isinstance(groups, str):
            groups = [groups]
        sso_login_sync(
            user=user,
            source="oidc",
            subject=claims["sub"],
            groups=groups,
            email=claims.get("email", ""),
            email_verified=claims.get("email_verified") is True,
        )
        return user
