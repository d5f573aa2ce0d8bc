"""The signed-in user's API token: see whether one exists, rotate it, revoke it.

POST /api/v1/auth/token/ answers the new key once (the `ferry` command line signs in with
it); only its digest is stored, and it expires (FERRY_API_TOKEN_DAYS).
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboard.accounts.tokens import api_token_current, api_token_revoke, api_token_rotate


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
