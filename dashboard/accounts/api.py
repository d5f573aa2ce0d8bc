"""The signed-in user's API token: see whether one exists, rotate it, revoke it."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboard.accounts.tokens import api_token_revoke, api_token_rotate


class TokenStateSerializer(serializers.Serializer):
    exists = serializers.BooleanField()
    created = serializers.DateTimeField(allow_null=True)
    key = serializers.CharField(required=False, help_text="only in the answer to POST")


class ApiTokenView(APIView):
    """GET: whether you have a token. POST: a new one (shown once). DELETE: revoke it."""

    @extend_schema(responses={200: TokenStateSerializer})
    def get(self, request):
        token = Token.objects.filter(user=request.user).first()
        return Response({"exists": token is not None, "created": token.created if token else None})

    @extend_schema(request=None, responses={201: TokenStateSerializer})
    def post(self, request):
        key = api_token_rotate(user=request.user)
        token = Token.objects.get(key=key)
        return Response(
            {"exists": True, "created": token.created, "key": key}, status=status.HTTP_201_CREATED
        )

    @extend_schema(request=None, responses={204: None})
    def delete(self, request):
        api_token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
