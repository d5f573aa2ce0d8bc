"""The campaign API: create, read (with per-host steps and hook calls), add hooks, the
workflow actions (submit, approve, reject, start, pause, resume, cancel), its step timeline,
change record (JSON and PDF) and status links. Roles as plans: planners create and submit,
approvers approve, operators run; command hooks are admins'; status links as a plan's."""

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from dashboard.api.permissions import action_permission
from dashboard.permissions import can
from migrations_app.api.hooks import HookSerializer, HookWriteSerializer
from migrations_app.api.inputs import validated
from migrations_app.api.workflow_actions import CommentSerializer, ReasonSerializer
from migrations_app.campaigns import services
from migrations_app.models import Campaign, CampaignStep, HookCall
from migrations_app.reports.campaign_record import (
    campaign_record_build,
    campaign_record_json,
    campaign_timeline_json,
)
from migrations_app.reports.change_record_pdf import campaign_record_pdf
from migrations_app.sharing.api import (
    ShareLinkCreateSerializer,
    ShareLinkSerializer,
    share_link_created,
    share_links_action,
)
from migrations_app.sharing.services import share_link_create

CampaignPermission = action_permission("plan.view", "plan.edit")


class StepSerializer(serializers.ModelSerializer):
    host_name = serializers.CharField(source="host.name", read_only=True)
    host_state = serializers.CharField(source="host.state", read_only=True)
    plan_status = serializers.CharField(source="plan.status", read_only=True, default=None)

    class Meta:
        model = CampaignStep
        fields = [
            "id",
            "position",
            "wave",
            "host",
            "host_name",
            "host_state",
            "phase",
            "plan",
            "plan_status",
            "timeline",
            "reason",
        ]


class HookCallSerializer(serializers.ModelSerializer):
    host_name = serializers.CharField(source="host.name", read_only=True, default=None)

    class Meta:
        model = HookCall
        fields = ["id", "event", "host_name", "ok", "code", "outcome", "duration_ms", "created_at"]


class CampaignSerializer(serializers.ModelSerializer):
    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "status",
            "stage",
            "status_reason",
            "change_ticket",
            "window_start",
            "window_end",
            "group",
            "batch_size",
            "failback",
            "author_name",
            "approved_by_name",
            "created_at",
            "started_at",
            "finished_at",
        ]


class CampaignDetailSerializer(CampaignSerializer):
    steps = StepSerializer(many=True, read_only=True)
    hooks = HookSerializer(many=True, read_only=True)
    hook_calls = serializers.SerializerMethodField()
    plans = serializers.SerializerMethodField()

    class Meta(CampaignSerializer.Meta):
        fields = [
            *CampaignSerializer.Meta.fields,
            "description",
            "policy",
            "healthy_timeout_s",
            "transport_override_reason",
            "transport_override_by",
            "content_hash",
            "approved_hash",
            "steps",
            "hooks",
            "hook_calls",
            "plans",
        ]

    def get_hook_calls(self, obj) -> list:
        calls = obj.hook_calls.select_related("host").order_by("-id")[:100]
        data = HookCallSerializer(calls, many=True).data
        request = self.context.get("request")
        if request is not None and can(request.user, "host.error_detail"):
            details = {c.pk: c.detail for c in calls}
            for row in data:
                row["detail"] = details.get(row["id"], "")
        return data

    def get_plans(self, obj) -> list:
        return list(obj.plans.order_by("id").values("id", "name", "status", "campaign_role"))


class CampaignWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    hosts = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        default=list,
        help_text="host ids or names, in order (one host per wave)",
    )
    group = serializers.CharField(
        max_length=100, required=False, allow_blank=True, default="", help_text="every host of it"
    )
    batch_size = serializers.IntegerField(required=False, default=1, help_text="hosts per wave")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    change_ticket = serializers.CharField(
        max_length=100, required=False, allow_blank=True, default=""
    )
    window_start = serializers.DateTimeField(required=False, allow_null=True, default=None)
    window_end = serializers.DateTimeField(required=False, allow_null=True, default=None)
    policy = serializers.DictField(required=False, default=dict)
    failback = serializers.BooleanField(required=False, default=False)
    healthy_timeout_s = serializers.IntegerField(required=False, default=600)


class CampaignViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Maintenance campaigns: rolling host maintenance with drain, gate, hooks and failback."""

    permission_classes = [CampaignPermission]
    action_permissions = {
        "create": "plan.edit",
        "hooks": "plan.edit",
        "submit": "plan.submit",
        "approve": "plan.approve",
        "reject": "plan.approve",
        "start": "plan.run",
        "pause": "plan.run",
        "resume": "plan.run",
        "cancel": "plan.run",
        "transport_override": "plan.transport_override",
    }
    http_method_names = ["get", "post", "head", "options"]

    def get_queryset(self):
        # A person scoped to host groups sees the campaigns whose hosts all lie in scope.
        campaigns = services.campaigns_in_scope(Campaign.objects.all(), self.request.user)
        if self.action == "retrieve":
            return campaigns.prefetch_related("steps__host", "steps__plan", "hooks")
        return campaigns

    def get_serializer_class(self):
        if self.action == "retrieve":
            return CampaignDetailSerializer
        return CampaignSerializer

    def _answer(self, campaign, code=status.HTTP_200_OK) -> Response:
        campaign = self.get_queryset().get(pk=campaign.pk)
        data = CampaignDetailSerializer(campaign, context={"request": self.request}).data
        return Response(data, status=code)

    @extend_schema(request=CampaignWriteSerializer, responses={201: CampaignDetailSerializer})
    def create(self, request, *args, **kwargs):
        data = validated(CampaignWriteSerializer, request.data)
        campaign = services.campaign_create(actor=request.user, **data)
        return self._answer(campaign, status.HTTP_201_CREATED)

    @extend_schema(request=HookWriteSerializer, responses={201: HookSerializer})
    @action(detail=True, methods=["post"])
    def hooks(self, request, pk=None):
        """Add a hook to a draft campaign (HTTP: signed like the webhooks, same outbound
        rules; command: admins only, from FERRY_HOOK_COMMAND_DIR)."""
        campaign = self.get_object()  # first: outside the scope is 404, whatever the input
        data = validated(HookWriteSerializer, request.data)
        hook = services.campaign_hook_add(campaign=campaign, actor=request.user, **data)
        return Response(HookSerializer(hook).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ReasonSerializer, responses={200: CampaignDetailSerializer})
    @action(detail=True, methods=["post"], url_path="transport-override")
    def transport_override(self, request, pk=None):
        """Admins: allow (reason) or forbid again (empty) moves without TLS for the plans
        this draft campaign will generate."""
        data = validated(ReasonSerializer, request.data)
        campaign = services.campaign_transport_override_set(
            campaign=self.get_object(), actor=request.user, reason=data["reason"]
        )
        return self._answer(campaign)

    @extend_schema(request=None, responses={200: CampaignDetailSerializer})
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        return self._answer(
            services.campaign_submit(campaign=self.get_object(), actor=request.user)
        )

    @extend_schema(request=CommentSerializer, responses={200: CampaignDetailSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        data = validated(CommentSerializer, request.data)
        campaign = services.campaign_approve(
            campaign=self.get_object(),
            actor=request.user,
            comment=data["comment"],
            expected_hash=data["content_hash"],
        )
        return self._answer(campaign)

    @extend_schema(request=ReasonSerializer, responses={200: CampaignDetailSerializer})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        data = validated(ReasonSerializer, request.data)
        campaign = services.campaign_reject(
            campaign=self.get_object(), actor=request.user, reason=data["reason"]
        )
        return self._answer(campaign)

    @extend_schema(request=ReasonSerializer, responses={200: CampaignDetailSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        """Start (outside the window: `reason` is the override reason)."""
        data = validated(ReasonSerializer, request.data)
        campaign = services.campaign_start(
            campaign=self.get_object(), actor=request.user, override_reason=data["reason"]
        )
        return self._answer(campaign)

    @extend_schema(request=ReasonSerializer, responses={200: CampaignDetailSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        data = validated(ReasonSerializer, request.data)
        campaign = services.campaign_pause(
            campaign=self.get_object(), actor=request.user, reason=data["reason"]
        )
        return self._answer(campaign)

    @extend_schema(request=None, responses={200: CampaignDetailSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._answer(
            services.campaign_resume(campaign=self.get_object(), actor=request.user)
        )

    @extend_schema(request=ReasonSerializer, responses={200: CampaignDetailSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        data = validated(ReasonSerializer, request.data)
        campaign = services.campaign_cancel(
            campaign=self.get_object(), actor=request.user, reason=data["reason"]
        )
        return self._answer(campaign)

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["get"])
    def timeline(self, request, pk=None):
        """Every host with its seven steps (enter maintenance, drain, gate, host action,
        wait healthy, exit maintenance, failback: start, end, duration) and the wall time
        split into migrations, host action and Ferry's own overhead."""
        campaign = self.get_object()
        return Response(campaign_timeline_json(campaign))

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["get"], url_path="change-record")
    def change_record(self, request, pk=None):
        """The change record: summary, every host's steps, plans, audit events, chain head."""
        campaign = self.get_object()
        return Response(campaign_record_json(campaign_record_build(campaign, user=request.user)))

    @extend_schema(request=None, responses={(200, "application/pdf"): bytes})
    @action(detail=True, methods=["get"], url_path="change-record/pdf")
    def change_record_pdf(self, request, pk=None):
        """The change record as PDF (the printable page, rendered by WeasyPrint)."""
        campaign = self.get_object()
        response = HttpResponse(
            campaign_record_pdf(campaign, request=request), content_type="application/pdf"
        )
        name = f"campaign-{campaign.pk}-change-record.pdf"
        response["Content-Disposition"] = f'inline; filename="{name}"'
        return response

    @share_links_action([action_permission("sharelink.manage", "sharelink.manage")])
    def share_links(self, request, pk=None):
        """List the campaign's status links, or create one (its URL is shown only once)."""
        campaign = get_object_or_404(
            services.campaigns_in_scope(Campaign.objects.all(), request.user, "sharelink.manage"),
            pk=pk,
        )
        if request.method == "GET":
            return Response(ShareLinkSerializer(campaign.share_links.all(), many=True).data)
        data = validated(ShareLinkCreateSerializer, request.data)
        link, token = share_link_create(campaign=campaign, actor=request.user, **data)
        return share_link_created(request, link, token)
