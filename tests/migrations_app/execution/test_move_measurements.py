"""What a completed migration's job stats teach the next estimate of the VM."""

from migrations_app.execution.stats import move_measurements

MIB = 1024 * 1024


def test_it_measures_footprint_setup_and_rss_overhead_from_job_stats():
    stats = {
        "memory_total": 256 * MIB,
        "memory_constant": (256 - 72) * 256,  # 4 KiB pages that were zero
        "memory_page_size": 4096,
        "time_elapsed": 2700,
        "data_processed": 72 * MIB,
    }
    got = move_measurements(stats, bandwidth_mib_s=32, rss_mib=100)
    assert got == {
        "memory_footprint_mib": 72,
        "memory_rss_overhead_mib": 28,
        "migration_setup_s": 0.45,
    }


def test_it_measures_no_setup_from_a_long_throttled_convergence():
    stats = {
        "memory_total": 256 * MIB,
        "memory_constant": 0,
        "memory_page_size": 4096,
        "time_elapsed": 38000,  # 23 passes, the guest throttled: QEMU sent below the cap
        "data_processed": 700 * MIB,
        "memory_iteration": 23,
        "auto_converge_throttle": 50,
    }
    got = move_measurements(stats, bandwidth_mib_s=32, rss_mib=None)
    assert "migration_setup_s" not in got and got["memory_footprint_mib"] == 256
    plain = move_measurements(
        {**stats, "memory_iteration": 3, "auto_converge_throttle": 0},
        bandwidth_mib_s=32,
        rss_mib=None,
    )
    assert plain["migration_setup_s"] == round(38 - 700 / 32, 2)


def test_it_measures_no_setup_when_the_move_was_not_capped():
    got = move_measurements(
        {"memory_total": MIB * 8, "memory_constant": 0, "time_elapsed": 900, "data_processed": 1},
        bandwidth_mib_s=None,
        rss_mib=None,
    )
    assert got == {"memory_footprint_mib": 8}


def _completed(run, item, number, **fields):
    """A completed libvirt attempt of `item` (its stats are recorded by the caller)."""
    from django.utils import timezone

    from migrations_app.models import ItemAttempt

    return ItemAttempt.objects.create(
        run=run,
        item=item,
        number=number,
        driver="libvirt",
        source_host=item.source_host,
        destination_host=item.destination_host,
        status="completed",
        finished_at=timezone.now(),
        **fields,
    )


def _moved(run, item, number, rss, footprint):
    """A completed libvirt attempt of `item` whose stats measured `footprint`, rss before."""
    from inventory.models import VirtualMachine
    from migrations_app.execution import services

    VirtualMachine.objects.filter(pk=item.vm_id).update(memory_rss_mib=rss)
    attempt = _completed(run, item, number)
    stats = {
        "memory_total": 512 * MIB,
        "memory_constant": (512 - footprint) * 256,
        "memory_page_size": 4096,
        "time_elapsed": 3000,
        "data_processed": footprint * MIB,
    }
    services.attempt_record_measurements(attempt, item, stats)
    attempt.refresh_from_db()
    return attempt


def test_a_host_learns_the_median_qemu_overhead_of_the_first_moves_it_sent(approved_plan):
    from inventory.models import VirtualMachine
    from migrations_app.models import PlanRun
    from tests.migrations_app.execution.conftest import host

    src, dst = host("src"), host("dst")
    plan = approved_plan([(src, dst)] * 3, memory_mib=512)
    run = PlanRun.objects.create(plan=plan, started_by_name="oli")
    items = list(plan.items.order_by("position"))
    for item, (rss, footprint) in zip(items, [(250, 100), (230, 120), (400, 200)], strict=True):
        attempt = _moved(run, item, 1, rss, footprint)
        assert attempt.evidence["measured"]["memory_rss_overhead_mib"] == rss - footprint
        assert attempt.evidence["measured"]["first_move"] is True
        assert VirtualMachine.objects.get(pk=item.vm_id).memory_footprint_mib == footprint
    src.refresh_from_db()
    dst.refresh_from_db()
    # overheads 150, 110, 200: the median, over the three first moves src sent
    assert (src.qemu_rss_overhead_mib, src.qemu_rss_overhead_samples) == (150, 3)
    assert dst.qemu_rss_overhead_mib is None
    # A VM that arrived by migration has a small rss (received zero pages are never
    # touched): its next move teaches the VM, not the host's first-move overhead.
    attempt = _moved(run, items[0], 2, 110, 100)
    assert attempt.evidence["measured"]["first_move"] is False
    src.refresh_from_db()
    assert (src.qemu_rss_overhead_mib, src.qemu_rss_overhead_samples) == (150, 3)


def test_completed_moves_teach_their_link_setup_and_rate_on_both_hosts(approved_plan):
    from inventory.models import VirtualMachine
    from migrations_app.execution import services
    from migrations_app.models import PlanRun
    from tests.migrations_app.execution.conftest import host

    src, dst = host("src"), host("dst")
    plan = approved_plan([(src, dst)] * 4, memory_mib=512)
    plan.policy = {**(plan.policy or {}), "bandwidth_mib_s": 32, "require_tls": False}
    plan.save(update_fields=["policy"])
    run = PlanRun.objects.create(plan=plan, started_by_name="oli")
    for number, (item, footprint) in enumerate(
        zip(plan.items.order_by("position"), (40, 80, 160, 320), strict=True), start=1
    ):
        VirtualMachine.objects.filter(pk=item.vm_id).update(dirty_rate_mib_s=0, memory_rss_mib=400)
        # 0.8 s of setup, then 80 % of the 32 MiB/s cap
        total_ms = round((0.8 + footprint / (0.8 * 32)) * 1000)
        attempt = _completed(run, item, number, total_time_ms=total_ms)
        stats = {
            "memory_total": 512 * MIB,
            "memory_constant": (512 - footprint) * 256,
            "memory_page_size": 4096,
            "time_elapsed": total_ms,
            "data_processed": footprint * MIB,
        }
        services.attempt_record_measurements(attempt, item, stats)
        attempt.refresh_from_db()
        sample = attempt.evidence["measured"]["fit_sample"]
        # the ratio of the footprint to what the estimate knew: rss, less the QEMU
        # overhead the source host learnt from the earlier first moves
        assert sample["first_move"] and sample["touched_ratio"] > 0
    src.refresh_from_db()
    dst.refresh_from_db()
    fit = src.link_fits[str(dst.pk)]
    assert dst.link_fits[str(src.pk)] == fit
    assert fit["tcp"]["moves"] == 4
    assert abs(fit["tcp"]["setup_s"] - 0.8) < 0.05 and abs(fit["tcp"]["rate_factor"] - 1.25) < 0.03
    assert fit["first_touched"]["moves"] == 4
    assert VirtualMachine.objects.get(pk=item.vm_id).migration_measured_at is not None
    # The plan's snapshot gives its source host the fit of the link its items move over.
    from migrations_app.checks.snapshot import snapshot_load

    snapshot = snapshot_load(plan)
    assert snapshot.hosts[src.pk].link_fits == {str(dst.pk): fit}
    assert snapshot.hosts[dst.pk].link_fits == {}  # no item moves from dst


def test_a_failing_link_refit_never_undoes_what_the_move_recorded(approved_plan, monkeypatch):
    from migrations_app.execution import services
    from migrations_app.models import PlanRun
    from tests.migrations_app.execution.conftest import host

    def broken(row):
        raise RuntimeError("injected: refit failed")

    monkeypatch.setattr(services, "link_fit_update", broken)
    src, dst = host("src"), host("dst")
    plan = approved_plan([(src, dst)], memory_mib=512)
    run = PlanRun.objects.create(plan=plan, started_by_name="oli")
    item = plan.items.get()
    attempt = _completed(run, item, 1, total_time_ms=4000)
    stats = {
        "memory_total": 512 * MIB,
        "memory_constant": (512 - 100) * 256,
        "memory_page_size": 4096,
        "time_elapsed": 4000,
        "data_processed": 100 * MIB,
    }
    services.attempt_record_measurements(attempt, item, stats)
    attempt.refresh_from_db()
    # The move's own measurements and its sample are kept; only the refit was skipped.
    assert attempt.evidence["measured"]["memory_footprint_mib"] == 100
    assert "fit_sample" in attempt.evidence["measured"]
    src.refresh_from_db()
    assert src.link_fits in ({}, None)
