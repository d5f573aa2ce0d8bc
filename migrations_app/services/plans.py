"""Plan services: create and edit plans and their items.

Each service is one transaction that locks the plan row, validates its input with messages
a person understands (PlanError; PlanStateError when the plan's state forbids the edit),
calls `plan_content_changed` for content edits (version bump, return to draft, approvals
voided) and records its audit event.
"""

from django.contrib.auth import get_user_model
from django.db import transaction

from dashboard.audit.record import audit_record
from dashboard.permissions import actor_scope, scope_label
from inventory.models import VirtualMachine
from migrations_app.errors import PlanError, PlanStateError
from migrations_app.models import MigrationPlan, PlanItem
from migrations_app.policy import Policy, PolicyError
from migrations_app.services.item_input import (
    clean_mode,
    clean_network_map,
    clean_overrides,
    clean_storage_map,
    resolve_group,
    resolve_host,
    resolve_vms,
)
from migrations_app.services.placing import place_items
from migrations_app.services.plan_edits import (
    plan_content_changed,
    plan_lock,
    plan_require_editable,
)

UNSET = object()
NAME_LIMIT = 40  # VM names listed in one audit event before "and N more"
MOVABLE_STATES = ("running", "paused")


def _user_of(actor):
    User = get_user_model()
    return actor if isinstance(actor, User) else None


def _names(vms) -> dict:
    names = [vm.name for vm in vms]
    return {"count": len(names), "vms": names[:NAME_LIMIT]}


def _one_line(value: str, what: str) -> str:
    """A name or ticket: one line, no control characters (a line break in a plan's name
    ended up in every email subject, which Django then refuses to send: L10)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise PlanError(f"The {what} must be one line without control characters.")
    return value


def _clean_window(window_start, window_end) -> None:
    if window_start is not None and window_end is not None and window_end <= window_start:
        raise PlanError(
            f"The maintenance window ends ({window_end:%Y-%m-%d %H:%M}) before it starts "
            f"({window_start:%Y-%m-%d %H:%M})."
        )


def _clean_policy(policy) -> dict:
    if policy is None:
        return {}
    if not isinstance(policy, dict):
        raise PlanError("The policy must be an object of policy fields.")
    try:
        Policy.from_dict(policy)
    except PolicyError as exc:
        raise PlanError(str(exc)) from None
    except TypeError as exc:
        raise PlanError(f"Policy value of the wrong type: {exc}") from None
    return dict(policy)


def plan_create(
    *,
    actor,
    name: str,
    description: str = "",
    change_ticket: str = "",
    window_start=None,
    window_end=None,
    policy: dict | None = None,
) -> MigrationPlan:
    """Create a draft plan."""
    name = _one_line((name or "").strip(), "plan name")
    if not name:
        raise PlanError("A plan needs a name.")
    _one_line(change_ticket or "", "change ticket")
    _clean_window(window_start, window_end)
    policy = _clean_policy(policy)
    user = _user_of(actor)
    with transaction.atomic():
        plan = MigrationPlan.objects.create(
            name=name[:200],
            description=description or "",
            change_ticket=(change_ticket or "").strip()[:100],
            window_start=window_start,
            window_end=window_end,
            policy=policy,
            author=user,
            author_name=user.get_username() if user else getattr(actor, "name", "system"),
            contributors=[{"id": user.pk, "name": user.get_username(), "as": ["created"]}]
            if user
            else [],
        )
        audit_record(
            actor=actor,
            action="plan.created",
            obj=plan,
            after={
                "name": plan.name,
                "change_ticket": plan.change_ticket,
                "window_start": window_start,
                "window_end": window_end,
                "policy": policy,
            },
        )
    return plan


def plan_update(
    *,
    plan: MigrationPlan,
    actor,
    name=UNSET,
    description=UNSET,
    change_ticket=UNSET,
    window_start=UNSET,
    window_end=UNSET,
    policy=UNSET,
) -> MigrationPlan:
    """Change a plan's fields; every one is content (approvals are voided)."""
    with transaction.atomic():
        plan = plan_lock(plan)
        plan_require_editable(plan)
        before, after = {}, {}

        def change(field, value):
            if value is not UNSET and getattr(plan, field) != value:
                before[field] = getattr(plan, field)
                after[field] = value
                setattr(plan, field, value)

        if name is not UNSET:
            name = _one_line((name or "").strip(), "plan name")
            if not name:
                raise PlanError("A plan needs a name.")
            change("name", name[:200])
        if description is not UNSET:
            change("description", description or "")
        if change_ticket is not UNSET:
            change("change_ticket", _one_line((change_ticket or "").strip(), "change ticket")[:100])
        change("window_start", window_start)
        change("window_end", window_end)
        _clean_window(plan.window_start, plan.window_end)
        if policy is not UNSET:
            change("policy", _clean_policy(policy))
        if not after:
            return plan
        # Every field is content: the approvers approved the name, description and change
        # ticket they read as much as the items (a swapped ticket must void approvals).
        plan.save()
        plan_content_changed(plan, actor, what=", ".join(sorted(after)))
        audit_record(actor=actor, action="plan.updated", obj=plan, before=before, after=after)
    return plan


def _default_mode(vm: VirtualMachine, shared_pool_ids: set) -> str:
    copy = any(
        d.device in ("disk", "lun") and d.pool_id not in shared_pool_ids for d in vm.disks.all()
    )
    return PlanItem.Mode.LIVE_COPY if copy else PlanItem.Mode.LIVE


def _add_items(plan, vms, *, destination, mode, chosen_by) -> list[PlanItem]:
    """Create items for VMs (plan locked by the caller); refuse what cannot be planned."""
    present = set(PlanItem.objects.filter(plan=plan).values_list("vm_id", flat=True))
    again = [vm.name for vm in vms if vm.pk in present]
    if again:
        raise PlanError(f"Already in this plan: {', '.join(sorted(again))}.")
    elsewhere = dict(
        PlanItem.objects.filter(vm__in=vms)
        .exclude(plan=plan)
        .exclude(plan__status__in=MigrationPlan.TERMINAL)
        .values_list("vm_id", "plan__name")
    )
    if elsewhere:
        listed = ", ".join(
            sorted(f"{vm.name} (plan '{elsewhere[vm.pk]}')" for vm in vms if vm.pk in elsewhere)
        )
        raise PlanError(f"Already in another open plan: {listed}.")
    homeless = [vm.name for vm in vms if vm.host_id is None]
    if homeless:
        raise PlanError(f"Ferry does not know the host of: {', '.join(sorted(homeless))}.")
    if destination is not None and mode != PlanItem.Mode.STORAGE_ONLY:
        same = [vm.name for vm in vms if vm.host_id == destination.pk]
        if same:
            raise PlanError(
                f"The destination {destination.name} is the current host of "
                f"{', '.join(sorted(same))}; choose another destination."
            )
    last = PlanItem.objects.filter(plan=plan).order_by("-position").first()
    position = (last.position + 1) if last else 0
    items = []
    for offset, vm in enumerate(vms):
        dest = destination
        if mode == PlanItem.Mode.STORAGE_ONLY:
            dest = vm.host  # the VM stays; only its disks move
        items.append(
            PlanItem(
                plan=plan,
                vm=vm,
                source_host_id=vm.host_id,
                destination_host=dest,
                destination_chosen_by=chosen_by if dest is not None else "",
                mode=mode,
                position=position + offset,
            )
        )
    return PlanItem.objects.bulk_create(items, batch_size=500)


def plan_add_vms(
    *, plan: MigrationPlan, vms, actor, destination=None, mode: str = PlanItem.Mode.LIVE
) -> list[PlanItem]:
    """Add VMs (objects or ids) to a plan, optionally with one destination and a mode."""
    mode = clean_mode(mode)
    with transaction.atomic():
        plan = plan_lock(plan)
        plan_require_editable(plan)
        scope = actor_scope(actor, "plan.edit")
        vms = resolve_vms(vms, lock=True, scope=scope)
        dest = resolve_host(destination, scope=scope) if destination is not None else None
        items = _add_items(plan, vms, destination=dest, mode=mode, chosen_by="planner")
        plan_content_changed(plan, actor, what="VMs added")
        audit_record(
            actor=actor,
            action="plan.items_added",
            obj=plan,
            after={
                **_names(vms),
                "destination": dest.name if dest else None,
                "mode": mode,
                "scope": scope_label(scope),
            },
        )
    return items


def plan_evacuate_host(*, plan: MigrationPlan, host, actor) -> dict:
    """Add every running/paused VM of a host and place them; say what was left and why."""

    with transaction.atomic():
        plan = plan_lock(plan)
        plan_require_editable(plan)
        host = resolve_host(host, scope=actor_scope(actor, "plan.edit"))
        candidates = list(
            VirtualMachine.objects.select_for_update(no_key=True)
            .filter(host=host, missing=False, state__in=MOVABLE_STATES)
            .prefetch_related("disks")
            .order_by("name", "id")
        )
        in_plan = set(PlanItem.objects.filter(plan=plan).values_list("vm_id", flat=True))
        busy = dict(
            PlanItem.objects.filter(vm__in=candidates)
            .exclude(plan=plan)
            .exclude(plan__status__in=MigrationPlan.TERMINAL)
            .values_list("vm_id", "plan__name")
        )
        skipped = [
            {"vm": vm.name, "reason": f"already in open plan '{busy[vm.pk]}'"}
            for vm in candidates
            if vm.pk in busy
        ]
        fresh = [vm for vm in candidates if vm.pk not in busy and vm.pk not in in_plan]
        shared = set(host.storage_pools.filter(shared=True).values_list("pk", flat=True))
        items = []
        for mode in (PlanItem.Mode.LIVE, PlanItem.Mode.LIVE_COPY):
            group = [vm for vm in fresh if _default_mode(vm, shared) == mode]
            if group:
                items += _add_items(plan, group, destination=None, mode=mode, chosen_by="")
        evacuated_ids = list(
            PlanItem.objects.filter(plan=plan, source_host=host).values_list("pk", flat=True)
        )
        placements = place_items(plan, actor=actor, item_ids=evacuated_ids, replace=False)
        plan_content_changed(plan, actor, what=f"evacuation of {host.name}")
        placed = [p for p in placements if p.destination_id is not None]
        unplaced = [p for p in placements if p.destination_id is None]
        result = {
            "host": host.name,
            "added": len(items),
            "already_in_plan": len([vm for vm in candidates if vm.pk in in_plan]),
            "skipped": skipped,
            "placed": len(placed),
            "unplaced": [{"item": p.item_id, "reason": p.note.get("reason", "")} for p in unplaced],
            "scope": scope_label(actor_scope(actor, "plan.edit")),
        }
        audit_record(actor=actor, action="plan.host_evacuated", obj=plan, after=result)
    return result


def plan_move_to_group(*, plan: MigrationPlan, vms, group: str, actor) -> dict:
    """Add VMs (or re-target those already in the plan) and place them in a host group."""
    with transaction.atomic():
        plan = plan_lock(plan)
        plan_require_editable(plan)
        scope = actor_scope(actor, "plan.edit")
        group = resolve_group(group, actor)
        vms = resolve_vms(vms, lock=True, scope=scope)
        existing = {
            i.vm_id: i for i in PlanItem.objects.filter(plan=plan, vm__in=vms).select_related("vm")
        }
        new = [vm for vm in vms if vm.pk not in existing]
        inside = [vm.name for vm in vms if vm.host is not None and vm.host.group == group]
        if inside:
            raise PlanError(
                f"Already in group '{group}': {', '.join(sorted(inside))}; nothing to move."
            )
        items = _add_items(plan, new, destination=None, mode=PlanItem.Mode.LIVE, chosen_by="")
        if existing:
            PlanItem.objects.filter(pk__in=[i.pk for i in existing.values()]).update(
                destination_host=None, destination_chosen_by=""
            )
        ids = [i.pk for i in items] + [i.pk for i in existing.values()]
        placements = place_items(plan, actor=actor, item_ids=ids, replace=True, group=group)
        plan_content_changed(plan, actor, what=f"move to group {group}")
        result = {
            "group": group,
            "added": len(items),
            "retargeted": len(existing),
            "placed": len([p for p in placements if p.destination_id is not None]),
            "unplaced": [
                {"item": p.item_id, "reason": p.note.get("reason", "")}
                for p in placements
                if p.destination_id is None
            ],
            "scope": scope_label(scope),
        }
        audit_record(actor=actor, action="plan.moved_to_group", obj=plan, after=result)
    return result


def plan_item_update(
    *,
    item: PlanItem,
    actor,
    destination=UNSET,
    mode=UNSET,
    storage_map=UNSET,
    network_map=UNSET,
    policy_overrides=UNSET,
    wave=UNSET,
) -> PlanItem:
    """Change one item's destination, mode, storage/network maps, policy overrides or wave."""
    with transaction.atomic():
        plan = plan_lock(item.plan_id)
        plan_require_editable(plan)
        item = PlanItem.objects.select_related("vm", "source_host").get(pk=item.pk)
        before = _item_state(item)
        if mode is not UNSET:
            item.mode = clean_mode(mode)
        if destination is not UNSET:
            item.destination_host = (
                resolve_host(destination, scope=actor_scope(actor, "plan.edit"))
                if destination is not None
                else None
            )
            item.destination_chosen_by = "planner" if destination is not None else ""
        if item.mode == PlanItem.Mode.STORAGE_ONLY:
            item.destination_host = item.source_host
        elif item.destination_host_id == item.source_host_id:
            raise PlanError(
                f"The destination of {item.vm.name} is its current host "
                f"{item.source_host.name}; choose another (or mode storage_only)."
            )
        if storage_map is not UNSET:
            item.storage_map = clean_storage_map(storage_map, item.vm)
        if network_map is not UNSET:
            item.network_map = clean_network_map(network_map, item.vm)
        if policy_overrides is not UNSET:
            item.policy_overrides = clean_overrides(policy_overrides, plan)
        if wave is not UNSET:
            if not isinstance(wave, int) or isinstance(wave, bool) or not 0 <= wave <= 100:
                raise PlanError(f"The wave of {item.vm.name} must be a whole number 0–100.")
            item.wave = wave
        after = _item_state(item)
        if after == before:
            return item
        item.save()
        plan_content_changed(plan, actor, what=f"item {item.vm.name}")
        audit_record(
            actor=actor,
            action="plan.item_updated",
            obj=plan,
            before={"item": item.pk, **before},
            after={"item": item.pk, **after, "scope": scope_label(actor_scope(actor, "plan.edit"))},
        )
    return item


def _item_state(item: PlanItem) -> dict:
    return {
        "vm": item.vm.name,
        "destination": item.destination_host_id,
        "mode": item.mode,
        "storage_map": item.storage_map,
        "network_map": item.network_map,
        "policy_overrides": item.policy_overrides,
        "wave": item.wave,
    }


def plan_item_remove(*, item: PlanItem, actor) -> None:
    """Take one VM out of a plan."""
    with transaction.atomic():
        plan = plan_lock(item.plan_id)
        plan_require_editable(plan)
        item = PlanItem.objects.select_related("vm").get(pk=item.pk)
        item_id, state = item.pk, _item_state(item)
        item.delete()
        plan_content_changed(plan, actor, what=f"{state['vm']} removed")
        audit_record(
            actor=actor, action="plan.item_removed", obj=plan, before={"item": item_id, **state}
        )


def plan_delete(*, plan: MigrationPlan, actor) -> None:
    """Delete a draft plan that was never submitted (anything else is kept as evidence)."""
    with transaction.atomic():
        plan = plan_lock(plan)
        if plan.status != MigrationPlan.Status.DRAFT or plan.submitted_at is not None:
            raise PlanStateError(
                f"Plan '{plan.name}' is {plan.get_status_display()}"
                + (" and was submitted before" if plan.submitted_at else "")
                + ": only never-submitted drafts can be deleted; cancel it instead."
            )
        state = {"name": plan.name, "version": plan.version, "items": plan.items.count()}
        audit_record(actor=actor, action="plan.deleted", obj=plan, before=state)
        plan.delete()
