"""LDAP login through django-auth-ldap, with roles from the directory's groups.

The account is the directory entry's uid; its roles are set at every login from the DNs of
the groups it belongs to (FERRY_SSO_GROUP_ROLES may name a group by DN or short name). A
directory e-mail address counts as verified: the directory is the organisation's record.
"""

from django_auth_ldap.backend import LDAPBackend

from dashboard.accounts.sso import sso_login_sync


class FerryLDAPBackend(LDAPBackend):
    """django-auth-ldap, plus Ferry's roles from group membership at every login."""

    def authenticate_ldap_user(self, ldap_user, password):
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is None:
            return None
        sso_login_sync(
            user=user,
            source="ldap",
            subject=ldap_user.dn,
            groups=sorted(ldap_user.group_dns),
            email=user.email,
            email_verified=bool(user.email),
        )
        return user
