"""Runs API: runs with their attempts, the numbered event range live clients use to fill
gaps, progress samples, and the operator's item actions (cancel, retry) and run finish.

Reads go through querysets; writes call migrations_app.execution.services.
"""

from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError

# DRF's get_object_or_404: a malformed id ("null", "1.5") is a 404, not a ValueError 500.
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from dashboard.api.permissions import action_permission
from migrations_app.execution import force_complete, services
from migrations_app.live.events import event_message
from migrations_app.live.snapshots import attempt_dict, sample_dict
from migrations_app.models import ItemAttempt, PlanItem, PlanRun, ProgressSample, RunEvent
from migrations_app.scoping import visible_plans

RunPermission = action_permission("plan.view", "plan.run")
EVENTS_MAX = 1000
SAMPLES_MAX = 5000


def _int_param(request, name: str, default: int, *, minimum: int = 0, maximum=None) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: "must be a whole number"}) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ValidationError({name: f"must be between {minimum} and {maximum or 'any'}"})
    return value


def _attempt_detail(attempt: ItemAttempt) -> dict:
    data = attempt_dict(attempt)
    data.update(
        item=attempt.item_id,
        vm=attempt.item.vm.name,
        mode=attempt.item.mode,
        source=attempt.source_host.name,
        destination=attempt.destination_host.name,
        rehearsal=attempt.driver == ItemAttempt.Driver.REHEARSAL,
        claimed_by=attempt.claimed_by,
        lease_expires_at=attempt.lease_expires_at,
        migrate_called_at=attempt.migrate_called_at,
        cancel_requested=attempt.cancel_requested,
        libvirt_error=attempt.libvirt_error,
        bytes_transferred=attempt.bytes_transferred,
        final_stats=attempt.final_stats,
        evidence=attempt.evidence,
    )
    return data


def _run_dict(run: PlanRun, attempts=None) -> dict:
    data = {
        "id": run.pk,
        "plan": run.plan_id,
        "status": run.status,
        "status_reason": run.status_reason,
        "started_by": run.started_by_name,
        "override_reason": run.override_reason,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "last_seq": run.event_seq,
    }
    if attempts is not None:
        data["attempts"] = [_attempt_detail(a) for a in attempts]
    return data


class RunViewSet(viewsets.GenericViewSet, mixins.ListModelMixin):
    """Runs of plans: list (?plan=ID), detail with attempts, events range, finish."""

    permission_classes = [RunPermission]
    action_permissions = {"finish": "plan.run"}
    queryset = PlanRun.objects.all()

    def get_queryset(self):
        qs = PlanRun.objects.filter(plan__in=visible_plans(self.request.user)).order_by(
            "-started_at", "-id"
        )
        plan = self.request.query_params.get("plan")
        if plan:
            qs = qs.filter(plan_id=_int_param(self.request, "plan", 0))
        return qs

    def get_serializer_class(self):  # schema only; responses are built by hand
        return serializers.Serializer

    @extend_schema(operation_id="runs_list", responses=OpenApiTypes.OBJECT)
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        rows = [_run_dict(run) for run in (page if page is not None else self.get_queryset())]
        return self.get_paginated_response(rows) if page is not None else Response(rows)

    @extend_schema(operation_id="runs_retrieve", responses=OpenApiTypes.OBJECT)
    def retrieve(self, request, pk=None):
        run = get_object_or_404(PlanRun.objects.filter(plan__in=visible_plans(request.user)), pk=pk)
        attempts = ItemAttempt.objects.filter(run=run).select_related(
            "item", "item__vm", "source_host", "destination_host"
        )
        return Response(_run_dict(run, attempts))

    @extend_schema(
        parameters=[
            OpenApiParameter("after", int, description="return events with seq > after"),
            OpenApiParameter("limit", int, description=f"at most this many (≤ {EVENTS_MAX})"),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    @action(detail=True, methods=["get"])
    def events(self, request, pk=None):
        """Events of the run in sequence order after `after`: what a live client missed."""
        run = get_object_or_404(PlanRun.objects.filter(plan__in=visible_plans(request.user)), pk=pk)
        after = _int_param(request, "after", 0)
        limit = _int_param(request, "limit", EVENTS_MAX, minimum=1, maximum=EVENTS_MAX)
        events = list(RunEvent.objects.filter(run=run, seq__gt=after).order_by("seq")[:limit])
        return Response(
            {
                "run": run.pk,
                "plan": run.plan_id,
                "after": after,
                "last_seq": run.event_seq,
                "events": [event_message(e, run.plan_id) for e in events],
                "more": bool(events) and events[-1].seq < run.event_seq,
            }
        )

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["post"])
    def finish(self, request, pk=None):
        """Close a run whose items have all ended (some failed): record the plan's outcome."""
        run = get_object_or_404(PlanRun.objects.filter(plan__in=visible_plans(request.user)), pk=pk)
        # A run or plan state that does not allow it is a 409 (dashboard.api.errors).
        run = services.run_finish(plan=run.plan, actor=request.user)
        return Response(_run_dict(run))


class AttemptViewSet(viewsets.GenericViewSet):
    """Attempts: detail with evidence, and progress samples (?after_ms=)."""

    permission_classes = [RunPermission]
    queryset = ItemAttempt.objects.all()

    def get_serializer_class(self):
        return serializers.Serializer

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def retrieve(self, request, pk=None):
        attempt = get_object_or_404(
            ItemAttempt.objects.filter(run__plan__in=visible_plans(request.user)).select_related(
                "item", "item__vm", "source_host", "destination_host"
            ),
            pk=pk,
        )
        return Response(_attempt_detail(attempt))

    @extend_schema(
        parameters=[
            OpenApiParameter("after_ms", int, description="samples with elapsed_ms > this")
        ],
        responses=OpenApiTypes.OBJECT,
    )
    @action(detail=True, methods=["get"])
    def samples(self, request, pk=None):
        """Progress samples of the attempt in time order (charts, the estimate model)."""
        attempt = get_object_or_404(
            ItemAttempt.objects.filter(run__plan__in=visible_plans(request.user)), pk=pk
        )
        after = _int_param(request, "after_ms", -1, minimum=-1)
        rows = ProgressSample.objects.filter(attempt=attempt, elapsed_ms__gt=after).order_by(
            "elapsed_ms", "id"
        )[:SAMPLES_MAX]
        return Response(
            {
                "attempt": attempt.pk,
                "driver": attempt.driver,
                "samples": [sample_dict(s) for s in rows],
            }
        )


class ItemActionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class ItemActionViewSet(viewsets.GenericViewSet):
    """Operator actions on one item of a running plan: cancel, force-complete, retry."""

    permission_classes = [action_permission("plan.view", "plan.run")]
    queryset = PlanItem.objects.all()
    serializer_class = ItemActionSerializer

    @extend_schema(request=ItemActionSerializer, responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel the item: dropped before it starts, its libvirt job aborted while it runs."""
        item = get_object_or_404(
            PlanItem.objects.filter(plan__in=visible_plans(request.user)).select_related(
                "plan", "vm"
            ),
            pk=pk,
        )
        data = ItemActionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        attempt = services.item_cancel(
            item=item, actor=request.user, reason=data.validated_data["reason"]
        )
        return Response(
            {"item": item.pk, "attempt": attempt.pk if attempt else None, "cancel_requested": True},
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(request=ItemActionSerializer, responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["post"], url_path="force-complete")
    def force_complete(self, request, pk=None):
        """Pause the guest on its source so the rest of its memory moves and the move ends;
        answers with the downtime it is expected to add. 409 with the reason when it makes
        no sense now (not moving, storage only, post-copy already running)."""
        item = get_object_or_404(
            PlanItem.objects.filter(plan__in=visible_plans(request.user)).select_related(
                "plan", "vm"
            ),
            pk=pk,
        )
        data = ItemActionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        answer = force_complete.item_force_complete(
            item=item, actor=request.user, reason=data.validated_data["reason"]
        )
        return Response(answer, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """Queue a failed, cancelled or needs-attention item again (a new attempt)."""
        item = get_object_or_404(
            PlanItem.objects.filter(plan__in=visible_plans(request.user)).select_related(
                "plan", "vm"
            ),
            pk=pk,
        )
        item = services.item_retry(item=item, actor=request.user)
        return Response({"item": item.pk, "status": item.status}, status=status.HTTP_202_ACCEPTED)
