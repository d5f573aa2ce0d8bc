"""Pages around the workflow: its buttons on the plan page and the status link forms."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from dashboard.errors import FerryError
from dashboard.permissions import can, role_required
from migrations_app.scoping import visible_plans
from migrations_app.services.rerun import plan_rerun_failed
from migrations_app.sharing.services import (
    share_link_create,
    share_link_revoke,
    share_link_url,
    share_links_manageable,
)
from migrations_app.workflow import services as workflow


def _back(request, plan_id: int):
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("plans:plan-detail", pk=plan_id)


def sharelink_create_from_form(request, **subject) -> bool:
    """Create a status link (of `plan=` or `campaign=`) from the page form, telling the
    person its URL once; False (with a message) when the form is refused."""
    hours = request.POST.get("hours", "").strip()
    never = bool(request.POST.get("never_expires"))
    expires_at = None
    if hours and not never:
        if not hours.isdigit() or not 1 <= int(hours) <= 8760:
            messages.error(request, "Expiry must be a whole number of hours from 1 to 8760.")
            return False
        expires_at = timezone.now() + timedelta(hours=int(hours))
    _, token = share_link_create(
        actor=request.user,
        expires_at=expires_at,
        never_expires=never,
        show_host_names=bool(request.POST.get("show_host_names")),
        label=request.POST.get("label", ""),
        **subject,
    )
    url = share_link_url(request, token)
    messages.success(request, f"Status link created; copy it now, it is shown once: {url}")
    if never:
        what = "campaign" if subject.get("campaign") is not None else "plan"
        messages.warning(
            request,
            f"This link never expires: whoever holds it can follow the {what} until someone "
            "revokes it.",
        )
    return True


@login_required
@require_POST
@role_required("sharelink.manage")
def sharelink_create_page(request, pk):
    plan = get_object_or_404(visible_plans(request.user), pk=pk)
    sharelink_create_from_form(request, plan=plan)
    return _back(request, plan.pk)


@login_required
@require_POST
@role_required("sharelink.manage")
def sharelink_revoke_page(request, link_id):
    # Only links of plans and campaigns inside the person's host groups (404 otherwise).
    link = get_object_or_404(share_links_manageable(request.user), pk=link_id)
    share_link_revoke(link=link, actor=request.user)
    messages.success(request, f"Status link {link.token_prefix}… revoked.")
    if link.campaign_id:
        target = request.POST.get("next", "")
        if target and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return redirect(target)
        return redirect("plans:campaign-detail", pk=link.campaign_id)
    return _back(request, link.plan_id)


_WORKFLOW = {
    "submit": lambda plan, user, post: workflow.plan_submit(plan=plan, actor=user),
    "approve": lambda plan, user, post: workflow.plan_approve(
        plan=plan,
        actor=user,
        comment=post.get("comment", ""),
        expected_hash=post.get("content_hash", ""),
    ),
    "reject": lambda plan, user, post: workflow.plan_reject(
        plan=plan, actor=user, reason=post.get("reason", "")
    ),
    "start": lambda plan, user, post: workflow.plan_start(
        plan=plan, actor=user, override_reason=post.get("override_reason", "")
    ),
    "pause": lambda plan, user, post: workflow.plan_pause(plan=plan, actor=user),
    "resume": lambda plan, user, post: workflow.plan_resume(plan=plan, actor=user),
    "cancel": lambda plan, user, post: workflow.plan_cancel(
        plan=plan, actor=user, reason=post.get("reason", "")
    ),
    "hold": lambda plan, user, post: workflow.plan_hold(
        plan=plan, actor=user, reason=post.get("reason", "")
    ),
    "release": lambda plan, user, post: workflow.plan_release(
        plan=plan, actor=user, reason=post.get("reason", "")
    ),
}


@login_required
@require_POST
def plan_workflow_page(request, pk, action):
    """The workflow buttons of the plan page: call the service, say what happened."""
    call = _WORKFLOW.get(action)
    if call is None:
        raise Http404("Unknown workflow action.")
    # After the 404 for an unknown action, as before: the role check of every plan page.
    if not can(request.user, "plan.view"):
        raise PermissionDenied("Your role does not allow this.")
    plan = get_object_or_404(visible_plans(request.user), pk=pk)
    try:
        call(plan, request.user, request.POST)
    except (FerryError, PermissionDenied) as exc:
        messages.error(request, str(exc) or "Your role does not allow this.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        plan.refresh_from_db()
        messages.success(
            request, f"Plan '{plan.name}': {action} done; it is now {plan.get_status_display()}."
        )
    return _back(request, plan.pk)


@login_required
@require_POST
@role_required("plan.run")
def plan_rerun_failed_page(request, pk):
    """The plan page's "Re-run failed items" button: the new plan opens on success."""
    plan = get_object_or_404(visible_plans(request.user), pk=pk)
    try:
        rerun = plan_rerun_failed(plan=plan, actor=request.user)
    except FerryError as exc:
        messages.error(request, str(exc))
        return _back(request, plan.pk)
    messages.success(
        request,
        f"Plan '{rerun.name}' carries the failed items; it is {rerun.get_status_display()}.",
    )
    return redirect("plans:plan-detail", pk=rerun.pk)
