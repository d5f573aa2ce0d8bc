"""The signed-in user's API token (see whether one exists, rotate it, revoke it), and the
admins' view of a user's roles (for every host, or scoped to host groups).

POST /api/v1/auth/token/ answers the new key once (the `ferry` command line signs in with
it); only its digest is stored, and it expires (FERRY_API_TOKEN_DAYS).
"""

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboard.accounts.roles import user_roles_get, user_roles_set
from dashboard.accounts.tokens import api_token_current, api_token_revoke, api_token_rotate
from dashboard.api.permissions import action_permission


class TokenStateSerializer(serializers.Serializer):
    exists = serializers.BooleanField()
    created = serializers.DateTimeField(allow_null=True)
    expires = serializers.DateTimeField(allow_null=True, required=False)
    key = serializers.CharField(required=False, help_text="only in the answer to POST")


class ApiTokenView(APIView):
    """GET: whether you have a token. POST: a new one (shown once). DELETE: revoke it."""

    @extend_schema(responses={200: TokenStateSerializer})
    def get(self, request):
        token = api_token_current(user=request.user)
        return Response(
            {
                "exists": token is not None,
                "created": token.created if token else None,
                "expires": token.expiry if token else None,
            }
        )

    @extend_schema(request=None, responses={201: TokenStateSerializer})
    def post(self, request):
        key, token = api_token_rotate(user=request.user)
        body = {"exists": True, "created": token.created, "expires": token.expiry, "key": key}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request):
        api_token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserRolesSerializer(serializers.Serializer):
    username = serializers.CharField(read_only=True)
    roles = serializers.DictField(
        help_text='{"planner": "all", "approver": ["site-a", "site-b"]}: a role for every '
        "host, or only for the hosts of the named host groups"
    )


class UserRolesView(APIView):
    """GET: a user's roles and where they hold them. PUT {"roles": {...}}: replace them
    (admins; audited as user.roles_set)."""

    permission_classes = [action_permission("users.manage", "users.manage")]

    @staticmethod
    def _user(username):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise NotFound(f"No user '{username}'.")
        return user

    @extend_schema(responses={200: UserRolesSerializer})
    def get(self, request, username: str):
        user = self._user(username)
        return Response({"username": user.username, "roles": user_roles_get(user)})

    @extend_schema(request=UserRolesSerializer, responses={200: UserRolesSerializer})
    def put(self, request, username: str):
        user = self._user(username)
        data = request.data if isinstance(request.data, dict) else {}
        extra = set(data) - {"roles", "reason"}
        if extra or "roles" not in data:
            raise serializers.ValidationError(
                {"detail": 'Send {"roles": {role: "all" or [host groups]}} (and a "reason").'}
            )
        roles = user_roles_set(
            actor=request.user, user=user, roles=data["roles"], reason=str(data.get("reason", ""))
        )
        return Response({"username": user.username, "roles": roles})
