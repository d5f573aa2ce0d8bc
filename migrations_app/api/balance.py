"""Balance on /api/v1/plans/: "balance group G" as a new draft plan (POST plans/balance/)
or into an empty draft (POST plans/{id}/balance/), and the placement rules
(/api/v1/placement-rules/) every plan builder honours. Views are thin: input is shaped by
serializers, the services decide, and their errors become 400/409 (dashboard.api.errors).
"""

from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from dashboard.api.permissions import action_permission
from migrations_app.api.inputs import validated
from migrations_app.api.serializers import PlanDetailSerializer, PlanWriteSerializer
from migrations_app.models import BalanceRun, PlacementRule
from migrations_app.services import balancing
from migrations_app.services import rules as rule_services
from migrations_app.services.rules import UNSET


class BalanceSerializer(serializers.Serializer):
    group = serializers.CharField(max_length=100, help_text="the host group to balance")
    target_pct = serializers.FloatField(
        required=False,
        default=10.0,
        min_value=0.1,
        max_value=100.0,
        help_text="each host's memory and CPU use within ± this many points of the group mean",
    )
    max_moves = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0, max_value=100_000
    )
    max_moved_mib = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0, max_value=2**40
    )
    storage_copy = serializers.BooleanField(
        required=False,
        default=False,
        help_text="also move VMs whose disks are not on shared storage (with a copy)",
    )


class BalancePlanSerializer(BalanceSerializer, PlanWriteSerializer):
    name = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default="", help_text="default: Balance G"
    )


def balance_run_dict(run: BalanceRun) -> dict:
    """What the planner answered, for the API and the plan page."""
    result = run.result or {}
    return {
        "id": run.pk,
        "group": run.group,
        "target_pct": run.target_pct,
        "max_moves": run.max_moves,
        "max_moved_mib": run.max_moved_mib,
        "reached": run.reached,
        "moves": run.moves,
        "memory_moved_mib": run.memory_moved_mib,
        "mean_pct": result.get("mean_pct"),
        "spread_before_pts": result.get("spread_before_pts"),
        "spread_after_pts": result.get("spread_after_pts"),
        "why_not": result.get("why_not", []),
        "refused_by": result.get("refused_by", {}),
        "lower_bound": result.get("lower_bound", {}),
        "load_sources": result.get("load_sources", {}),
        "load_window_minutes": run.load_window_minutes,
        "hosts": result.get("hosts", []),
        "pinned": result.get("pinned", []),
        "excluded_hosts": result.get("excluded_hosts", []),
        "created_at": run.created_at,
        "created_by": run.created_by_name,
    }


class PlanBalanceMixin:
    """The balance @actions, mixed into PlanViewSet."""

    def _balanced(self, plan, run, code) -> Response:
        plan = self.get_queryset().get(pk=plan.pk)
        return Response(
            {"plan": PlanDetailSerializer(plan).data, "balance": balance_run_dict(run)},
            status=code,
        )

    @extend_schema(
        operation_id="plans_balance_new",
        request=BalancePlanSerializer,
        responses={201: OpenApiTypes.OBJECT},
    )
    @action(detail=False, methods=["post"], url_path="balance")
    def balance_new(self, request):
        """A new draft plan of the moves that balance a host group (each move's reason in
        its item's placement note); validate, submit and run it like any plan."""
        data = validated(BalancePlanSerializer, request.data)
        plan, run = balancing.plan_create_balanced(actor=request.user, **data)
        return self._balanced(plan, run, status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="plans_balance",
        request=BalanceSerializer,
        responses={200: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["post"], url_path="balance")
    def balance(self, request, pk=None):
        """Fill this empty draft with the moves that balance a host group."""
        plan = self.get_object()
        data = validated(BalanceSerializer, request.data)
        run = balancing.plan_balance(plan=plan, actor=request.user, **data)
        return self._balanced(plan, run, status.HTTP_200_OK)


class PlacementRuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = PlacementRule
        fields = [
            "id",
            "name",
            "kind",
            "tag",
            "enabled",
            "description",
            "created_by_name",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_by_name", "created_at", "updated_at"]


class PlacementRuleCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.CharField(max_length=16, help_text="anti-affinity or affinity")
    tag = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class PlacementRuleUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    enabled = serializers.BooleanField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class PlacementRuleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Affinity and anti-affinity rules by VM tag: read (any role), add, change (name,
    enabled, description) and remove (planners)."""

    permission_classes = [action_permission("plan.view", "plan.edit")]
    serializer_class = PlacementRuleSerializer
    queryset = PlacementRule.objects.order_by("name", "id")
    filterset_fields = ["kind", "tag", "enabled"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    @extend_schema(request=PlacementRuleCreateSerializer, responses={201: PlacementRuleSerializer})
    def create(self, request):
        data = validated(PlacementRuleCreateSerializer, request.data)
        rule = rule_services.rule_create(actor=request.user, **data)
        return Response(PlacementRuleSerializer(rule).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PlacementRuleUpdateSerializer, responses=PlacementRuleSerializer)
    def partial_update(self, request, pk=None):
        data = validated(PlacementRuleUpdateSerializer, request.data, partial=True)
        changes = {k: data.get(k, UNSET) for k in ("name", "enabled", "description")}
        rule = rule_services.rule_update(rule=self.get_object(), actor=request.user, **changes)
        return Response(PlacementRuleSerializer(rule).data)

    def destroy(self, request, pk=None):
        rule_services.rule_delete(rule=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
