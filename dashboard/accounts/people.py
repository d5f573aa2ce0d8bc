"""People behind accounts: four eyes counts people, not accounts.

One person may hold a local account and an identity-provider account (OIDC subject, LDAP
DN). Two accounts are the same person when an admin linked them (the same `person` value on
their AccountIdentity), or when they carry the same e-mail address and both addresses are
trusted: verified by the identity provider (OIDC `email_verified`, the LDAP directory) or
entered by an admin for a local account. An untrusted address never merges two people.
"""

from django.contrib.auth import get_user_model
from django.db import transaction

from dashboard.accounts.models import AccountIdentity
from dashboard.audit.record import audit_record
from dashboard.errors import InputError


def _key(user_id: int, email: str, identity) -> str:
    if identity is not None and identity.person:
        return "link:" + identity.person.strip().lower()
    email = (email or "").strip().lower()
    trusted = identity is None or identity.source == AccountIdentity.Source.LOCAL
    if email and (trusted or identity.email_verified):
        return "email:" + email
    return f"user:{user_id}"


def person_keys(user_ids) -> dict[int, str]:
    """{user id: the key of the person behind the account} (two queries)."""
    ids = {pk for pk in user_ids if pk is not None}
    if not ids:
        return {}
    identities = {i.user_id: i for i in AccountIdentity.objects.filter(user_id__in=ids)}
    emails = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "email"))
    return {pk: _key(pk, emails.get(pk, ""), identities.get(pk)) for pk in ids}


def person_key(user) -> str:
    """The key of the person behind one account ("" for no account)."""
    pk = getattr(user, "pk", None)
    return person_keys([pk]).get(pk, "") if pk is not None else ""


def account_person_link(*, actor, user, person: str) -> AccountIdentity:
    """Link an account to a person ("" to unlink); audited as user.person_linked."""
    person = (person or "").strip()
    if len(person) > 150 or not person.isprintable():
        raise InputError("A person link is one printable line of at most 150 characters.")
    with transaction.atomic():
        identity, _ = AccountIdentity.objects.select_for_update(no_key=True).get_or_create(
            user=user
        )
        before = identity.person
        if before == person:
            return identity
        identity.person = person
        identity.save(update_fields=["person", "updated_at"])
        audit_record(
            actor=actor,
            action="user.person_linked",
            obj=user,
            object_repr=user.get_username(),
            before={"person": before},
            after={"person": person},
        )
    return identity
