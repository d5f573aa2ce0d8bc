"""Status links API: list the links you may manage, revoke one. Creation is per plan at
POST /api/v1/plans/{id}/share-links/."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from dashboard.api.permissions import action_permission
from dashboard.models_sharelink import ShareLink
from dashboard.sharelinks import share_link_revoke
from migrations_app.api.workflow_actions import ShareLinkSerializer


class ShareLinkViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Status links (tokens are never shown again after creation)."""

    serializer_class = ShareLinkSerializer
    permission_classes = [action_permission("sharelink.manage", "sharelink.manage")]
    filterset_fields = ["plan"]

    def get_queryset(self):
        return ShareLink.objects.order_by("-created_at", "-id")

    @extend_schema(request=None, responses={200: ShareLinkSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        """Revoke the link: its page answers 410 and its live streams close."""
        link = share_link_revoke(link=self.get_object(), actor=request.user)
        return Response(ShareLinkSerializer(link).data)
