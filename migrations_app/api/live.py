"""REST twins of the websocket streams: the same snapshots, for polling clients and for
pages whose websocket is blocked."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.response import Response

from dashboard.api.permissions import action_permission
from migrations_app.live.snapshots import dashboard_snapshot, plan_snapshot
from migrations_app.scoping import visible_plans

PlanViewPermission = action_permission("plan.view")


@extend_schema(responses=OpenApiTypes.OBJECT)
@api_view(["GET"])
@permission_classes([PlanViewPermission])
def plan_live_snapshot(request, plan_id: int):
    """The snapshot a websocket subscriber of this plan receives first."""
    plan = get_object_or_404(visible_plans(request.user), pk=plan_id)
    return Response(plan_snapshot(plan))


@extend_schema(responses=OpenApiTypes.OBJECT)
@api_view(["GET"])
@permission_classes([PlanViewPermission])
def dashboard_live_snapshot(request):
    """Running and scheduled plans with item counts, as the dashboard stream starts with."""
    return Response(dashboard_snapshot(plans=visible_plans(request.user)))
