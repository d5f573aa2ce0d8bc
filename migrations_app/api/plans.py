"""The plan API: CRUD of plans, nested items, validate, place, estimate, evacuate,
move-to-group and balance (PlanBalanceMixin). Views are thin: input is shaped by serializers, every write is a service
call, and service errors become 400 or 409 with the service's own message (dashboard.api.errors).
The workflow's actions (submit, approve, start...) come from PlanWorkflowActionsMixin.
"""

from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from dashboard.api.permissions import action_permission
from migrations_app.api import serializers as s
from migrations_app.api.balance import PlanBalanceMixin
from migrations_app.api.hooks import HookSerializer, HookWriteSerializer
from migrations_app.api.inputs import validated
from migrations_app.api.workflow_actions import PlanWorkflowActionsMixin
from migrations_app.models import PlanItem, ValidationRun
from migrations_app.scoping import plans_in_scope
from migrations_app.selectors.plans import (
    plan_estimate_get,
    plan_items,
    plan_latest_validation,
    plan_list,
)
from migrations_app.services import plans as services
from migrations_app.services.placing import plan_place
from migrations_app.services.plan_hooks import plan_hook_add, plan_hook_remove
from migrations_app.services.validation import plan_validate

PlanPermission = action_permission("plan.view", "plan.edit")


class PlanViewSet(
    PlanWorkflowActionsMixin,
    PlanBalanceMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Plans: list, read, create, change, delete (drafts); items, checks, placement, estimate."""

    permission_classes = [PlanPermission]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return plans_in_scope(plan_list(), self.request.user)

    def get_serializer_class(self):
        if self.action == "retrieve":
            return s.PlanDetailSerializer
        return s.PlanSerializer

    def _answer(self, plan, code=status.HTTP_200_OK) -> Response:
        plan = self.get_queryset().get(pk=plan.pk)
        return Response(s.PlanDetailSerializer(plan).data, status=code)

    @extend_schema(request=s.PlanWriteSerializer, responses={201: s.PlanDetailSerializer})
    def create(self, request, *args, **kwargs):
        data = validated(s.PlanWriteSerializer, request.data)
        plan = services.plan_create(actor=request.user, **data)
        return self._answer(plan, status.HTTP_201_CREATED)

    @extend_schema(request=s.PlanWriteSerializer, responses={200: s.PlanDetailSerializer})
    def partial_update(self, request, *args, **kwargs):
        plan = self.get_object()
        data = validated(s.PlanWriteSerializer, request.data, partial=True)
        plan = services.plan_update(plan=plan, actor=request.user, **data)
        return self._answer(plan)

    def destroy(self, request, *args, **kwargs):
        services.plan_delete(plan=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    # -- items ----------------------------------------------------------------------------
    @extend_schema(methods=["GET"], request=None, responses={200: s.ItemSerializer(many=True)})
    @extend_schema(
        methods=["POST"], request=s.ItemsAddSerializer, responses={201: s.ItemSerializer(many=True)}
    )
    @action(detail=True, methods=["get", "post"])
    def items(self, request, pk=None):
        """The plan's items (GET, paginated), or add VMs by id (POST)."""
        plan = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(plan_items(plan))
            return self.get_paginated_response(s.ItemSerializer(page, many=True).data)
        data = validated(s.ItemsAddSerializer, request.data)
        created = services.plan_add_vms(
            plan=plan,
            vms=data["vms"],
            destination=data["destination"],
            mode=data["mode"],
            actor=request.user,
        )
        rows = plan_items(plan).filter(pk__in=[i.pk for i in created])
        return Response(s.ItemSerializer(rows, many=True).data, status=status.HTTP_201_CREATED)

    def _item(self, plan, item_id) -> PlanItem:
        item = plan_items(plan).filter(pk=item_id).first()
        if item is None:
            raise NotFound(f"Plan '{plan.name}' has no item {item_id}.")
        return item

    @extend_schema(
        methods=["PATCH"], request=s.ItemUpdateSerializer, responses={200: s.ItemSerializer}
    )
    @extend_schema(methods=["GET"], request=None, responses={200: s.ItemSerializer})
    @extend_schema(methods=["DELETE"], request=None, responses={204: None})
    @action(detail=True, methods=["get", "patch", "delete"], url_path=r"items/(?P<item_id>\d+)")
    def item(self, request, pk=None, item_id=None):
        """One item: read it, change destination/mode/maps/overrides, or remove it."""
        plan = self.get_object()
        item = self._item(plan, item_id)
        if request.method == "GET":
            return Response(s.ItemSerializer(item).data)
        if request.method == "DELETE":
            services.plan_item_remove(item=item, actor=request.user)
            return Response(status=status.HTTP_204_NO_CONTENT)
        data = validated(s.ItemUpdateSerializer, request.data, partial=True)
        services.plan_item_update(item=item, actor=request.user, **data)
        return Response(s.ItemSerializer(self._item(plan, item_id)).data)

    # -- hooks ----------------------------------------------------------------------------
    @extend_schema(methods=["GET"], request=None, responses={200: HookSerializer(many=True)})
    @extend_schema(methods=["POST"], request=HookWriteSerializer, responses={201: HookSerializer})
    @action(detail=True, methods=["get", "post"])
    def hooks(self, request, pk=None):
        """The plan's hooks (GET), or add one (POST): pre_migration or post_migration, an
        HTTP call signed like the webhooks under the same outbound rules, or (admins only)
        a command from FERRY_HOOK_COMMAND_DIR. A hook is content: adding one voids
        approvals."""
        plan = self.get_object()
        if request.method == "GET":
            return Response(HookSerializer(plan.hooks.order_by("event", "id"), many=True).data)
        data = validated(HookWriteSerializer, request.data)
        hook = plan_hook_add(plan=plan, actor=request.user, **data)
        return Response(HookSerializer(hook).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"hooks/(?P<hook_id>\d+)")
    def hook(self, request, pk=None, hook_id=None):
        """Remove one of the plan's hooks (approvals are voided)."""
        plan = self.get_object()
        if not plan.hooks.filter(pk=hook_id).exists():
            raise NotFound(f"Plan '{plan.name}' has no hook {hook_id}.")
        plan_hook_remove(plan=plan, hook_id=int(hook_id), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    # -- checks, placement, estimate ------------------------------------------------------
    def _run_answer(self, request, run, code=status.HTTP_200_OK) -> Response:
        wanted = request.query_params.get("severity", "")
        context = {"severities": {v for v in wanted.split(",") if v} or None}
        return Response(s.ValidationRunSerializer(run, context=context).data, status=code)

    @extend_schema(request=None, responses={201: s.ValidationRunSerializer})
    @action(detail=True, methods=["post"])
    def validate(self, request, pk=None):
        """Run every check on every item; answers the stored run with its results
        (?severity=blocker,warning to leave out the rest)."""
        plan = self.get_object()
        run = plan_validate(plan=plan, actor=request.user)
        run = ValidationRun.objects.prefetch_related("results").get(pk=run.pk)
        return self._run_answer(request, run, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: s.ValidationRunSerializer})
    @action(detail=True, methods=["get"], url_path="validations/latest")
    def latest_validation(self, request, pk=None):
        """The most recent validation run with its results."""
        plan = self.get_object()
        run = plan_latest_validation(plan)
        if run is None:
            raise NotFound(f"Plan '{plan.name}' has not been validated yet.")
        return self._run_answer(request, run)

    @extend_schema(request=s.PlaceSerializer, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def place(self, request, pk=None):
        """Choose destinations for items without one (all items with replace=true)."""
        plan = self.get_object()
        data = validated(s.PlaceSerializer, request.data)
        placements = plan_place(plan=plan, actor=request.user, replace=data["replace"])
        placed = [p for p in placements if p.destination_id is not None]
        return Response(
            {
                "placed": len(placed),
                "unplaced": len(placements) - len(placed),
                "items": [
                    {"item": p.item_id, "destination_host": p.destination_id, "note": p.note}
                    for p in placements
                ],
            }
        )

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def estimate(self, request, pk=None):
        """A fresh estimate: per-item pre-copy model with its inputs, timeline, makespan."""
        return Response(plan_estimate_get(self.get_object()))

    @extend_schema(request=s.EvacuateSerializer, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def evacuate(self, request, pk=None):
        """Add every running/paused VM of a host and place them."""
        plan = self.get_object()
        data = validated(s.EvacuateSerializer, request.data)
        result = services.plan_evacuate_host(plan=plan, host=data["host"], actor=request.user)
        return Response(result)

    @extend_schema(request=s.MoveToGroupSerializer, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"], url_path="move-to-group")
    def move_to_group(self, request, pk=None):
        """Add (or re-target) VMs and place them on hosts of one group."""
        plan = self.get_object()
        data = validated(s.MoveToGroupSerializer, request.data)
        result = services.plan_move_to_group(
            plan=plan,
            vms=data["vms"],
            group=data["group"],
            actor=request.user,
        )
        return Response(result)
