"""After a completed live move: its sample for the link's fit, and the link's new fit.

Called by services.attempt_record_measurements inside the attempt's completion; the fit
itself is pure (migrations_app.calibration). The sample re-runs the pre-copy model with
what the move measured, so the link learns the model's error on this link, not the error
of a touched-memory guess (that one is learnt apart, from first moves only).
"""

from types import SimpleNamespace

from inventory.services import host_link_fit_record
from migrations_app.calibration import FIT_SAMPLES, fit_link, move_sample
from migrations_app.estimate import bandwidth_of, precopy, touched_of
from migrations_app.models import ItemAttempt, PlanItem


def attempt_fit_sample(row, item, vm_before: dict, values: dict, source_host) -> dict | None:
    """What this move teaches its link (None for moves that also copied storage, or
    that measured no footprint or time)."""
    footprint = values.get("memory_footprint_mib")
    if item.mode != PlanItem.Mode.LIVE or not footprint or not row.total_time_ms:
        return None
    policy = item.get_policy()
    bandwidth, _source = bandwidth_of(policy)
    dirty = vm_before.get("dirty_rate_mib_s")
    if dirty is None or dirty < 0:
        dirty = policy.assumed_dirty_rate_mib_s
    memory = vm_before.get("memory_mib") or footprint
    model = precopy(memory, float(dirty), bandwidth, policy, touched_mib=footprint)
    first_move = vm_before.get("memory_footprint_mib") is None
    touched_est = None
    if first_move:
        # The figure the estimate used before the move (touched_of on what it knew then).
        known = SimpleNamespace(
            memory_mib=memory,
            memory_footprint_mib=None,
            memory_rss_mib=vm_before.get("memory_rss_mib"),
            memory_rss_overhead_mib=vm_before.get("memory_rss_overhead_mib"),
        )
        touched_est, _why = touched_of(known, source_host)
    at = row.finished_at.isoformat() if row.finished_at else ""
    return move_sample(
        total_ms=row.total_time_ms,
        model_s=model.transfer_s,
        throttled=model.max_throttle_pct > 0,
        tls=policy.require_tls,
        first_move=first_move,
        touched_est_mib=touched_est,
        footprint_mib=footprint,
        at=at,
    )


def link_fit_update(row) -> dict:
    """Refit the link of `row` (both directions) on its newest FIT_SAMPLES samples."""
    pair = (row.source_host_id, row.destination_host_id)
    if pair[1] is None or pair[0] == pair[1]:
        return {}
    samples = []
    rows = (
        ItemAttempt.objects.filter(
            status=ItemAttempt.Status.COMPLETED,
            source_host_id__in=pair,
            destination_host_id__in=pair,
        )
        .order_by("-finished_at", "-id")
        .values_list("evidence", flat=True)
    )
    for evidence in rows.iterator():
        sample = ((evidence or {}).get("measured") or {}).get("fit_sample")
        if sample:
            samples.append(sample)
            if len(samples) >= FIT_SAMPLES:
                break
    fit = fit_link(samples)
    if fit:
        host_link_fit_record(host_ids=pair, fit=fit)
    return fit
