"""Status links API: list the links you may manage, revoke one. Creation is per plan at
POST /api/v1/plans/{id}/share-links/ and per campaign at POST /api/v1/campaigns/{id}/share-links/."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from dashboard.api.permissions import action_permission
from migrations_app.models.sharing import ShareLink
from migrations_app.sharing.services import (
    share_link_revoke,
    share_link_url,
    share_links_manageable,
)


class ShareLinkCreateSerializer(serializers.Serializer):
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="default: FERRY_SHARE_LINK_DAYS (7 days) from now",
    )
    never_expires = serializers.BooleanField(
        required=False, default=False, help_text="explicitly a link without expiry"
    )
    show_host_names = serializers.BooleanField(required=False, default=False)
    label = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)


class ShareLinkSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    plan = serializers.IntegerField(source="plan_id", allow_null=True)
    campaign = serializers.IntegerField(source="campaign_id", allow_null=True)
    token_prefix = serializers.CharField()
    label = serializers.CharField()
    show_host_names = serializers.BooleanField()
    created_by_name = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    state = serializers.SerializerMethodField()

    def get_state(self, link) -> str:
        return link.state()


def share_links_action(permission_classes):
    """The `share-links` @action of a plan or campaign viewset: GET lists, POST creates."""

    def wrap(view):
        view = action(
            detail=True,
            methods=["get", "post"],
            url_path="share-links",
            permission_classes=permission_classes,
        )(view)
        view = extend_schema(
            methods=["POST"], request=ShareLinkCreateSerializer, responses={201: dict}
        )(view)
        return extend_schema(
            methods=["GET"], request=None, responses={200: ShareLinkSerializer(many=True)}
        )(view)

    return wrap


def share_link_created(request, link: ShareLink, token: str) -> Response:
    """The answer to a link's creation: the only time its URL (with the token) is shown."""
    body = dict(ShareLinkSerializer(link).data)
    body["url"] = share_link_url(request, token)
    body["detail"] = "Copy the link now: Ferry keeps only a hash of its token."
    return Response(body, status=status.HTTP_201_CREATED)


class ShareLinkViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Status links (tokens are never shown again after creation)."""

    serializer_class = ShareLinkSerializer
    permission_classes = [action_permission("sharelink.manage", "sharelink.manage")]
    filterset_fields = ["plan", "campaign"]

    def get_queryset(self):
        return share_links_manageable(self.request.user).order_by("-created_at", "-id")

    @extend_schema(request=None, responses={200: ShareLinkSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        """Revoke the link: its page answers 410 and its live streams close."""
        link = share_link_revoke(link=self.get_object(), actor=request.user)
        return Response(ShareLinkSerializer(link).data)
