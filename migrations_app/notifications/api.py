"""Notification subscriptions and their delivery log."""

from django.db.models import Q
from django.shortcuts import get_object_or_404
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from dashboard.api.permissions import action_permission
from dashboard.permissions import can
from migrations_app.models import MigrationPlan
from migrations_app.models.notifications import (
    NOTIFY_EVENTS,
    DeliveryAttempt,
    NotificationDelivery,
    NotificationSubscription,
)
from migrations_app.notifications.services import subscription_create, subscription_delete
from migrations_app.scoping import visible_campaigns


class SubscriptionSerializer(serializers.ModelSerializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=NOTIFY_EVENTS), required=False, default=list
    )
    secret = serializers.SerializerMethodField(
        help_text="HMAC key of webhook signatures: only in the answer to POST (shown once)"
    )

    class Meta:
        model = NotificationSubscription
        fields = [
            "id",
            "kind",
            "target",
            "plan",
            "campaign",
            "events",
            "active",
            "secret",
            "created_at",
        ]
        read_only_fields = ["id", "active", "secret", "created_at"]

    def get_secret(self, subscription) -> str:
        # Shown once, to whoever created the subscription, in the answer to its creation
        # (L2): anyone who could read it later could sign notifications of their own.
        return subscription.secret if self.context.get("show_secret") else ""


class AttemptSerializer(serializers.ModelSerializer):
    error_detail = serializers.SerializerMethodField(
        help_text="the raw network error: admins only (empty otherwise)"
    )

    class Meta:
        model = DeliveryAttempt
        fields = ["number", "at", "ok", "status_code", "error", "error_detail", "duration_ms"]

    def get_error_detail(self, attempt) -> str:
        request = self.context.get("request")
        return attempt.error_detail if can(getattr(request, "user", None), "users.manage") else ""


class DeliverySerializer(serializers.ModelSerializer):
    attempt_log = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = NotificationDelivery
        fields = [
            "id",
            "subscription",
            "event",
            "plan_id",
            "campaign_id",
            "status",
            "attempts",
            "created_at",
            "delivered_at",
            "next_attempt_at",
            "last_error",
            "attempt_log",
        ]


_Manage = action_permission("notification.manage", "notification.manage")


class SubscriptionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Subscriptions: per plan or per campaign (planners, operators, admins) or global
    (admins only: every plan and campaign)."""

    serializer_class = SubscriptionSerializer
    permission_classes = [_Manage]
    filterset_fields = ["plan", "campaign", "kind"]

    def get_queryset(self):
        subscriptions = NotificationSubscription.objects.order_by("id")
        # Admins see every subscription; everyone else only their own (L2): a receiver URL
        # and its deliveries are the creator's business, and only they may remove it.
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return subscriptions
        if not can(self.request.user, "notification.manage_global"):
            subscriptions = subscriptions.filter(
                Q(plan__isnull=False) | Q(campaign__isnull=False), created_by=self.request.user
            )
        return subscriptions

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        plan, campaign = data.get("plan"), data.get("campaign")
        if plan is None and campaign is None:
            if not can(request.user, "notification.manage_global"):
                raise PermissionDenied(
                    "Only admins may subscribe to every plan and campaign; name a plan or "
                    "a campaign."
                )
        if plan is not None:
            plan = get_object_or_404(MigrationPlan, pk=plan.pk)
        if campaign is not None:
            # A campaign outside the person's host groups is as unknown as on its own page.
            campaign = get_object_or_404(
                visible_campaigns(request.user, "notification.manage"),
                pk=campaign.pk,
            )
        subscription = subscription_create(
            actor=request.user,
            kind=data["kind"],
            target=data["target"],
            plan=plan,
            campaign=campaign,
            events=data.get("events", []),
        )
        answer = SubscriptionSerializer(
            subscription, context={**self.get_serializer_context(), "show_secret": True}
        )
        return Response(answer.data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        is_global = instance.plan_id is None and instance.campaign_id is None
        if is_global and not can(self.request.user, "notification.manage_global"):
            raise PermissionDenied("Only admins may remove a subscription to every plan.")
        subscription_delete(actor=self.request.user, subscription=instance)


class DeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    """Deliveries with every attempt (what the receiver answered, or why it failed)."""

    serializer_class = DeliverySerializer
    permission_classes = [_Manage]
    filterset_fields = ["subscription", "status", "event", "plan_id", "campaign_id"]

    def get_queryset(self):
        deliveries = NotificationDelivery.objects.prefetch_related("attempt_log").order_by("-id")
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return deliveries
        if not can(self.request.user, "notification.manage_global"):
            deliveries = deliveries.filter(
                Q(subscription__plan__isnull=False) | Q(subscription__campaign__isnull=False),
                subscription__created_by=self.request.user,
            )
        return deliveries
