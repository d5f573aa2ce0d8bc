"""Workflow actions on /api/v1/plans/{id}/: submit, approve, reject, start, pause, resume,
cancel, hold, release; status links; the change record.

PlanViewSet inherits this mixin. The views stay thin: the matrix decides who may call an
action (403), the services decide whether the plan's state allows it (409 with the
service's message) and whether a reason is missing (400).
"""

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from dashboard.api.permissions import action_permission
from dashboard.permissions import can
from migrations_app.reports.change_record import change_record_build, change_record_json
from migrations_app.reports.change_record_pdf import change_record_pdf
from migrations_app.selectors.approvals import approvals_required, approvals_valid_count
from migrations_app.services.rerun import plan_rerun_failed
from migrations_app.services.transport_override import plan_transport_override_set
from migrations_app.sharing.api import (
    ShareLinkCreateSerializer,
    ShareLinkSerializer,
    share_link_created,
    share_links_action,
)
from migrations_app.sharing.services import share_link_create
from migrations_app.workflow import services as workflow


class CommentSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)
    content_hash = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=64,
        help_text="the content hash you reviewed; refused (409) when the plan changed since",
    )


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)


class StartSerializer(serializers.Serializer):
    override_reason = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=4000
    )


class WorkflowStateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    version = serializers.IntegerField()
    content_hash = serializers.CharField()
    hold = serializers.BooleanField()
    approvals = serializers.IntegerField()
    approvals_required = serializers.IntegerField()
    detail = serializers.CharField()


def _permission(write_action: str):
    return [action_permission("plan.view", write_action)]


class PlanWorkflowActionsMixin:
    """The workflow's @actions, mixed into PlanViewSet."""

    def _workflow_answer(self, plan, detail: str, code=status.HTTP_200_OK) -> Response:
        plan.refresh_from_db()
        body = {
            "id": plan.pk,
            "status": plan.status,
            "version": plan.version,
            "content_hash": plan.content_hash,
            "hold": plan.hold,
            "approvals": approvals_valid_count(plan),
            "approvals_required": approvals_required(),
            "detail": detail,
        }
        return Response(body, status=code)

    def _input(self, serializer_class):
        serializer = serializer_class(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    @extend_schema(request=None, responses={200: WorkflowStateSerializer})
    @action(detail=True, methods=["post"], permission_classes=_permission("plan.submit"))
    def submit(self, request, pk=None):
        """Submit a validated draft for approval (freezes its content hash)."""
        plan = self.get_object()
        workflow.plan_submit(plan=plan, actor=request.user)
        return self._workflow_answer(plan, f"Plan '{plan.name}' submitted for approval.")

    @extend_schema(request=CommentSerializer, responses={200: WorkflowStateSerializer})
    @action(detail=True, methods=["post"], permission_classes=_permission("plan.approve"))
    def approve(self, request, pk=None):
        """Approve the submitted content (never your own plan); a comment is optional."""
        data = self._input(CommentSerializer)
        plan = self.get_object()
        workflow.plan_approve(
            plan=plan,
            actor=request.user,
            comment=data["comment"],
            expected_hash=data["content_hash"],
        )
        return self._workflow_answer(plan, f"Approval of plan '{plan.name}' recorded.")

    @extend_schema(request=ReasonSerializer, responses={200: WorkflowStateSerializer})
    @action(detail=True, methods=["post"], permission_classes=_permission("plan.approve"))
    def reject(self, request, pk=None):
        """Reject the submitted plan; a reason is required."""
        data = self._input(ReasonSerializer)
        plan = self.get_object()
        workflow.plan_reject(plan=plan, actor=request.user, reason=data["reason"])
        return self._workflow_answer(plan, f"Plan '{plan.name}' rejected.")

    @extend_schema(request=StartSerializer, responses={200: WorkflowStateSerializer})
    @action(detail=True, methods=["post"], permission_classes=_permission("plan.run"))
    def start(self, request, pk=None):
        """Start an approved plan; outside its window an override_reason is required."""
        data = self._input(StartSerializer)
        plan = self.get_object()
        workflow.plan_start(plan=plan, actor=request.user, override_reason=data["override_reason"])
        return self._workflow_answer(plan, f"Plan '{plan.name}' started.")

    @extend_schema(request=None, responses={200: WorkflowStateSerializer})
    @action(detail=True, methods=["post"], permission_classes=_permission("plan.run"))
    def pause(self, request, pk=None):
        """Pause a running plan."""
        plan = self.get_object()
        workflow.plan_pause(plan=plan, actor=request.user)
        return self._workflow_answer(plan, f"Plan '{plan.name}' paused.")

    @extend_schema(request=None, responses={200: WorkflowStateSerializer})
    @action(detail=True, methods=["post"], permission_classes=_permission("plan.run"))
    def resume(self, request, pk=None):
        """Resume a paused plan."""
        plan = self.get_object()
        workflow.plan_resume(plan=plan, actor=request.user)
        return self._workflow_answer(plan, f"Plan '{plan.name}' resumed.")

    @extend_schema(request=ReasonSerializer, responses={200: WorkflowStateSerializer})
    @action(
        detail=True,
        methods=["post"],
        url_path="transport-override",
        permission_classes=_permission("plan.transport_override"),
    )
    def transport_override(self, request, pk=None):
        """Admins: allow this plan's moves without TLS, with a reason (empty: forbid again).
        The override is content: the plan returns to draft and needs new approvals."""
        data = self._input(ReasonSerializer)
        plan = self.get_object()
        plan_transport_override_set(plan=plan, actor=request.user, reason=data["reason"])
        done = "allowed" if data["reason"].strip() else "no longer allowed"
        return self._workflow_answer(plan, f"Unencrypted moves {done} for plan '{plan.name}'.")

    @extend_schema(request=None, responses={201: WorkflowStateSerializer})
    @action(
        detail=True,
        methods=["post"],
        url_path="rerun-failed",
        permission_classes=_permission("plan.run"),
    )
    def rerun_failed(self, request, pk=None):
        """A new plan with only the failed and rolled-back items of this finished plan; it
        carries this plan's approval while its content stays within what was approved."""
        rerun = plan_rerun_failed(plan=self.get_object(), actor=request.user)
        return self._workflow_answer(
            rerun,
            f"Plan '{rerun.name}' carries the failed items of plan {pk}; it is {rerun.status}.",
            code=status.HTTP_201_CREATED,
        )

    # Operators cancel anything unfinished, planners only what has not started: the service
    # decides on the locked row, so the matrix check here is only "may see plans".
    @extend_schema(request=ReasonSerializer, responses={200: WorkflowStateSerializer})
    @action(detail=True, methods=["post"], permission_classes=_permission("plan.view"))
    def cancel(self, request, pk=None):
        """Cancel the plan; a reason is required."""
        if not (can(request.user, "plan.run") or can(request.user, "plan.edit")):
            raise PermissionDenied("Your role does not allow you to cancel plans.")
        data = self._input(ReasonSerializer)
        plan = self.get_object()
        workflow.plan_cancel(plan=plan, actor=request.user, reason=data["reason"])
        return self._workflow_answer(plan, f"Plan '{plan.name}' cancelled.")

    @extend_schema(request=ReasonSerializer, responses={200: WorkflowStateSerializer})
    @action(detail=True, methods=["post"], permission_classes=_permission("plan.run"))
    def hold(self, request, pk=None):
        """Put an operator hold on the plan (the scheduler will not start it)."""
        data = self._input(ReasonSerializer)
        plan = self.get_object()
        workflow.plan_hold(plan=plan, actor=request.user, reason=data["reason"])
        return self._workflow_answer(plan, f"Plan '{plan.name}' is on hold.")

    @extend_schema(request=ReasonSerializer, responses={200: WorkflowStateSerializer})
    @action(detail=True, methods=["post"], permission_classes=_permission("plan.run"))
    def release(self, request, pk=None):
        """Lift the operator hold."""
        data = self._input(ReasonSerializer)
        plan = self.get_object()
        workflow.plan_release(plan=plan, actor=request.user, reason=data["reason"])
        return self._workflow_answer(plan, f"Plan '{plan.name}' released.")

    @share_links_action(_permission("sharelink.manage"))
    def share_links(self, request, pk=None):
        """List the plan's status links, or create one (its URL is shown only once)."""
        plan = self.get_object()
        if request.method == "GET":
            if not can(request.user, "sharelink.manage"):
                raise PermissionDenied("Your role does not allow managing status links.")
            links = plan.share_links.all()
            return Response(ShareLinkSerializer(links, many=True).data)
        data = self._input(ShareLinkCreateSerializer)
        link, token = share_link_create(plan=plan, actor=request.user, **data)
        return share_link_created(request, link, token)

    @extend_schema(request=None, responses={200: dict})
    @action(
        detail=True,
        methods=["get"],
        url_path="change-record",
        permission_classes=_permission("plan.view"),
    )
    def change_record(self, request, pk=None):
        """The change record: plan, evidence the approvers saw, approvals, run, audit."""
        plan = self.get_object()
        return Response(change_record_json(change_record_build(plan, user=request.user)))

    @extend_schema(request=None, responses={(200, "application/pdf"): bytes})
    @action(
        detail=True,
        methods=["get"],
        url_path="change-record/pdf",
        permission_classes=_permission("plan.view"),
    )
    def change_record_pdf(self, request, pk=None):
        """The change record as PDF (the printable page, rendered by WeasyPrint)."""
        plan = self.get_object()
        response = HttpResponse(
            change_record_pdf(plan, request=request), content_type="application/pdf"
        )
        response["Content-Disposition"] = f'inline; filename="plan-{plan.pk}-change-record.pdf"'
        return response
