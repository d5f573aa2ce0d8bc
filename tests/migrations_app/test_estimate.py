"""The pre-copy model, storage copy time and the plan timeline under concurrency limits."""

import pytest

from migrations_app.checks.snapshot import DiskInfo, PoolInfo
from migrations_app.estimate import bandwidth_of, item_estimate, plan_estimate, precopy
from migrations_app.policy import Policy
from tests.migrations_app.snapshots import GIB, make_host, make_item, make_snapshot, make_vm


def test_it_converges_in_few_passes_when_dirty_rate_is_low():
    model = precopy(4096, 20, 110, Policy())
    assert model.converges and model.converges_by == "pre-copy"
    assert 2 <= model.iterations <= 6 and model.downtime_ms <= 300
    assert model.transfer_s == pytest.approx(4096 / 110 * (1 / (1 - 20 / 110)), rel=0.05)


def test_it_applies_the_policy_when_pre_copy_does_not_converge():
    abort = precopy(4096, 500, 110, Policy(on_no_convergence="abort"))
    assert not abort.converges and "aborts" in abort.note
    throttled = precopy(4096, 500, 110, Policy(on_no_convergence="auto_converge"))
    assert throttled.converges and throttled.converges_by == "auto_converge"
    assert throttled.max_throttle_pct >= 80
    post = precopy(4096, 500, 110, Policy(on_no_convergence="postcopy"))
    assert post.converges and post.converges_by == "postcopy" and post.downtime_ms == 300
    raised = precopy(64, 200, 110, Policy(on_no_convergence="raise_downtime"))
    assert raised.converges and raised.converges_by == "raise_downtime"
    assert "1000 ms" in raised.note
    too_big = precopy(4096, 200, 110, Policy(on_no_convergence="raise_downtime"))
    assert not too_big.converges


def test_it_labels_bandwidth_and_dirty_rate_sources():
    assert bandwidth_of(Policy()) == (110.0, "assumed path bandwidth")
    assert bandwidth_of(Policy(bandwidth_mib_s=50)) == (50.0, "policy bandwidth cap")
    assert bandwidth_of(Policy(bandwidth_mib_s=500))[1] == "assumed path bandwidth"
    source, dest = make_host(1), make_host(2)
    measured = make_item(make_vm(dirty_rate_mib_s=5.0), iid=1)
    assumed = make_item(make_vm(2, "vm2"), iid=2)
    snap = make_snapshot([source, dest], [measured, assumed])
    assert item_estimate(snap, measured).dirty_rate_source == "measured"
    assert item_estimate(snap, assumed).dirty_rate_source == "assumed"


def test_it_adds_storage_copy_time_for_copied_disks():
    source = make_host(1, pool_ids={10})
    dest = make_host(2, pool_ids={20})
    pools = [
        PoolInfo(10, "local", "dir", False, True, 500 * GIB),
        PoolInfo(20, "local", "dir", False, True, 500 * GIB),
    ]
    disk = DiskInfo("vda", "disk", "file", "/l/x.qcow2", 10, 40 * GIB, 11 * GIB, False, False)
    item = make_item(make_vm(disks=[disk]), mode="live_copy")
    estimate = item_estimate(make_snapshot([source, dest], [item], pools=pools), item)
    assert estimate.storage_copy_gib == 11.0
    assert estimate.storage_copy_s == pytest.approx(11 * 1024 / 110, rel=0.01)
    assert estimate.duration_s == pytest.approx(
        estimate.storage_copy_s + estimate.memory_transfer_s + 10, rel=0.01
    )


def test_it_schedules_under_plan_source_and_destination_limits():
    hosts = [make_host(i) for i in range(1, 6)]
    same_source = [
        make_item(make_vm(i, f"vm{i}"), iid=i, source_id=1, dest_id=2 + i % 2) for i in (1, 2, 3)
    ]
    policy = Policy(max_concurrent=5, max_outbound_per_host=1, max_inbound_per_host=5)
    estimate = plan_estimate(make_snapshot(hosts, same_source, policy=policy))
    ends = [(e.start_s, e.end_s) for e in estimate.items]
    assert ends[1][0] == ends[0][1] and ends[2][0] == ends[1][1]  # one at a time from h1
    assert estimate.makespan_s == pytest.approx(ends[2][1], abs=0.01)
    spread = [make_item(make_vm(i, f"vm{i}"), iid=i, source_id=1 + i, dest_id=5) for i in (1, 2, 3)]
    policy = Policy(max_concurrent=2, max_outbound_per_host=1, max_inbound_per_host=5)
    starts = [e.start_s for e in plan_estimate(make_snapshot(hosts, spread, policy=policy)).items]
    assert starts[0] == starts[1] == 0 and starts[2] > 0  # two at a time
    policy = Policy(max_concurrent=5, max_outbound_per_host=5, max_inbound_per_host=1)
    starts = [e.start_s for e in plan_estimate(make_snapshot(hosts, spread, policy=policy)).items]
    assert starts[0] == 0 and starts[1] > 0 and starts[2] > starts[1]  # one into h5 at a time


def test_it_carries_its_inputs_in_the_json():
    snap = make_snapshot([make_host(1), make_host(2)], [make_item(make_vm())])
    data = plan_estimate(snap).as_dict()
    item = data["items"][0]
    for key in (
        "memory_mib",
        "dirty_rate_mib_s",
        "dirty_rate_source",
        "bandwidth_mib_s",
        "bandwidth_source",
        "max_downtime_ms",
        "iterations",
        "downtime_ms",
        "converges",
    ):
        assert key in item
    # No cap: one migration fills the assumed link, so one per host; no plan-wide limit.
    assert data["limits"]["max_outbound_per_host"] == 1
    assert data["limits"]["max_concurrent"] == 100 and data["makespan_s"] == item["end_s"]
    assert data["limits"]["source"].startswith("link")


def test_it_derives_per_host_concurrency_from_link_and_cap_when_limits_are_unset():
    assert Policy().per_link == 1  # uncapped: one migration fills the link
    assert Policy(bandwidth_mib_s=64, assumed_bandwidth_mib_s=110).per_link == 1
    assert Policy(bandwidth_mib_s=50, assumed_bandwidth_mib_s=110).per_link == 2
    assert Policy(bandwidth_mib_s=64, assumed_bandwidth_mib_s=1190).per_link == 8  # bounded
    link = Policy(bandwidth_mib_s=300, assumed_bandwidth_mib_s=1190)
    assert (link.outbound_limit, link.inbound_limit, link.concurrent_limit) == (3, 3, 100)
    explicit = Policy.from_dict(
        {"max_outbound_per_host": 1, "max_concurrent": 2}, base=link
    )  # explicit values win over the rule
    assert (explicit.outbound_limit, explicit.inbound_limit, explicit.concurrent_limit) == (
        1,
        3,
        2,
    )
    assert Policy.from_dict({"max_inbound_per_host": None}).inbound_limit == 1


def test_it_puts_an_evacuation_on_one_wave_when_the_link_fits_every_migration():
    hosts = [make_host(1), make_host(2)]
    items = [make_item(make_vm(i, f"vm{i}"), iid=i, source_id=1, dest_id=2) for i in (1, 2, 3)]
    wide = Policy(bandwidth_mib_s=64, assumed_bandwidth_mib_s=1190)
    estimate = plan_estimate(make_snapshot(hosts, items, policy=wide))
    assert [e.start_s for e in estimate.items] == [0, 0, 0]
    narrow = Policy(bandwidth_mib_s=64, assumed_bandwidth_mib_s=110)
    estimate = plan_estimate(make_snapshot(hosts, items, policy=narrow))
    starts = [e.start_s for e in estimate.items]
    assert starts[0] == 0 and 0 < starts[1] < starts[2]


def test_it_sends_only_touched_memory_and_adds_the_setup_cost():
    source, dest = make_host(1), make_host(2)
    idle = make_item(make_vm(memory_mib=4096, memory_footprint_mib=512, migration_setup_s=0.4))
    estimate = item_estimate(make_snapshot([source, dest], [idle]), idle)
    assert (estimate.touched_mib, estimate.touched_source) == (512, "measured (last migration)")
    assert estimate.setup_source == "measured (last migration)"
    model = precopy(4096, 20, 110, Policy(), touched_mib=512)
    assert estimate.memory_transfer_s == pytest.approx(0.4 + model.transfer_s, abs=0.01)
    assert model.transfer_s < precopy(4096, 20, 110, Policy()).transfer_s / 5


def test_it_labels_where_touched_memory_and_setup_come_from():
    source, dest = make_host(1), make_host(2)
    snap_items = [
        make_item(make_vm(1, "rss", memory_rss_mib=700), iid=1),
        make_item(make_vm(2, "rss2", memory_rss_mib=700, memory_rss_overhead_mib=100), iid=2),
        make_item(make_vm(3, "none"), iid=3),
    ]
    snap = make_snapshot([source, dest], snap_items)
    rss, corrected, unknown = (item_estimate(snap, i) for i in snap_items)
    assert (rss.touched_mib, rss.touched_source) == (
        700,
        "first move: rss at sync (an upper bound)",
    )
    assert corrected.touched_mib == 600 and "overhead" in corrected.touched_source
    assert unknown.touched_mib == 4096
    assert unknown.touched_source == "first move, assumed (all configured memory)"
    assert unknown.setup_source == "assumed" and unknown.setup_s == 2.0  # TLS by default


def test_it_bounds_dirtying_by_the_touched_memory():
    # A guest dirtying faster than the link, but only within 40 MiB: the passes cannot
    # resend more than it has touched, so the downtime is bounded.
    bounded = precopy(4096, 500, 110, Policy(on_no_convergence="abort"), touched_mib=30)
    assert bounded.converges and bounded.downtime_ms <= 300


def test_a_first_move_takes_this_hosts_measured_qemu_overhead_off_the_rss():
    source = make_host(1, qemu_rss_overhead_mib=150, qemu_rss_overhead_samples=4)
    dest = make_host(2)
    first = make_item(make_vm(1, "new", memory_rss_mib=250), iid=1)
    own = make_item(make_vm(2, "moved", memory_rss_mib=250, memory_rss_overhead_mib=120), iid=2)
    snap = make_snapshot([source, dest], [first, own])
    new, moved = (item_estimate(snap, i) for i in (first, own))
    assert new.touched_mib == 100
    assert "this host's measured QEMU overhead" in new.touched_source
    assert "median of 4 first moves" in new.touched_source
    # the VM's own measurement wins over the host's median
    assert moved.touched_mib == 130 and "last migration" in moved.touched_source
    # a host that has measured nothing leaves rss as the upper bound
    bare = make_snapshot([make_host(1), dest], [first])
    assert item_estimate(bare, first).touched_mib == 250


def test_auto_converge_throttles_as_qemu_paces_it():
    policy = Policy(on_no_convergence="auto_converge")
    # Dirtying 38 MiB/s of a 110 MiB footprint at a 32 MiB/s cap: QEMU needs two "high"
    # periods (dirtied > 50 % of sent, each over 1 s) before the first 20 % step, then two
    # more for each 10 %; passes are ~3.4 s, so it converges at 50 % after ~11 passes.
    model = precopy(512, 38.1, 32, policy, touched_mib=110)
    assert model.converges and model.converges_by == "auto_converge"
    assert model.max_throttle_pct == 50 and 9 <= model.iterations <= 12
    assert 20 < model.transfer_s < 32
    # Dirtying under half of what is sent never trips the trigger: plain pre-copy.
    calm = precopy(512, 10, 32, policy, touched_mib=110)
    assert calm.converges_by == "pre-copy" and calm.max_throttle_pct == 0
    # Without auto-converge the same stuck guest is not throttled at all.
    stuck = precopy(512, 38.1, 32, Policy(on_no_convergence="abort"), touched_mib=110)
    assert not stuck.converges


def test_short_periods_do_not_count_towards_the_throttle():
    # Every pass well under a second: QEMU's trigger waits for a period over 1 s, so the
    # first step comes later than one step per two passes.
    from migrations_app.estimate import _Throttle

    throttle = _Throttle()
    for _ in range(3):
        throttle.sync(0.4, dirty=10, sent=10)
    assert throttle.pct == 0  # one period of 1.2 s: one high period so far
    for _ in range(3):
        throttle.sync(0.4, dirty=10, sent=10)
    assert throttle.pct == 0.2


def test_a_guest_far_above_a_slow_cap_converges_once_the_throttle_is_high_enough():
    # 20 MiB/s against 5 MiB/s over 150 MiB: passes of 30 s, several throttle steps per
    # pass (QEMU's 5-s syncs); the pass that reaches 99 % started lower, so it is no
    # reason to give up: the next pass runs at 99 % and converges.
    model = precopy(256, 20, 5, Policy(on_no_convergence="auto_converge"), touched_mib=150)
    assert model.converges and model.converges_by == "auto_converge"
    assert model.max_throttle_pct >= 80


# ----------------------------------------------------------------- learning from history


def _sample(model_s, total_s, *, throttled=False, tls=False, first=False, ratio=None, day=1):
    sample = {
        "total_s": total_s,
        "model_s": model_s,
        "throttled": throttled,
        "tls": tls,
        "first_move": first,
        "at": f"2026-11-{day:02d}T10:00:00+00:00",
    }
    if ratio is not None:
        sample["touched_ratio"] = ratio
    return sample


def test_it_fits_a_links_setup_and_effective_rate_from_completed_moves():
    from migrations_app.calibration import fit_link

    # The link carries 80 % of the bandwidth the model assumed, after 0.6 s of setup.
    plain = [_sample(x, round(0.6 + 1.25 * x, 3), day=i + 1) for i, x in enumerate((1, 3, 8, 20))]
    # Throttled moves run 1.4x slower than the model says (auto-converge pacing).
    throttled = [_sample(x, 0.6 + 1.4 * x, throttled=True) for x in (25, 30, 28)]
    fit = fit_link(plain + throttled)["tcp"]
    assert fit["setup_s"] == pytest.approx(0.6, abs=0.01)
    assert fit["rate_factor"] == pytest.approx(1.25, abs=0.01)
    assert fit["throttled_factor"] == pytest.approx(1.4, abs=0.01)
    assert fit["spread"] == 0.05  # exact data: only the floor is left
    assert (fit["moves"], fit["last"][:10]) == (7, "2026-11-04")


def test_it_keeps_its_assumptions_until_a_link_has_enough_moves_and_separates_tls():
    from migrations_app.calibration import fit_link

    assert fit_link([_sample(1, 1.5), _sample(2, 2.5)]) == {}
    fit = fit_link([_sample(x, 0.5 + x) for x in (1, 2, 4)] + [_sample(1, 3, tls=True)])
    assert "tls" not in fit and fit["tcp"]["setup_s"] == pytest.approx(0.5, abs=0.01)
    # Moves of one size cannot separate setup from rate: rate stays 1, setup takes the rest.
    same = fit_link([_sample(2, 3.1), _sample(2, 2.9), _sample(2, 3.0)])["tcp"]
    assert same["rate_factor"] == 1.0 and same["setup_s"] == pytest.approx(1.0, abs=0.01)


def test_noisy_moves_give_a_wider_interval_than_steady_ones():
    from migrations_app.calibration import fit_link

    steady = fit_link(
        [_sample(x, 0.5 + x * f) for x, f in ((1, 1.0), (3, 1.02), (6, 0.99), (9, 1))]
    )
    noisy = fit_link([_sample(x, 0.5 + x * f) for x, f in ((1, 1.5), (3, 0.7), (6, 1.3), (9, 0.8))])
    assert steady["tcp"]["spread"] < 0.1 < noisy["tcp"]["spread"]


def _vm_item(vid, name, policy, **kw):
    """An item of a 512 MiB VM that dirties nothing, under `policy`."""
    return make_item(
        make_vm(vid, name, memory_mib=512, dirty_rate_mib_s=0, **kw), iid=vid, policy=policy
    )


def _link(fit: dict, a, b):
    a.link_fits = {str(b.id): fit}
    b.link_fits = {str(a.id): fit}


def test_the_estimate_uses_the_links_fit_and_shows_an_interval_with_its_sources():
    from migrations_app.calibration import fit_link

    source, dest = make_host(1), make_host(2)
    samples = [_sample(x, 0.6 + 1.25 * x * f) for x, f in ((1, 1), (3, 1.1), (8, 0.95), (20, 1))]
    samples += [_sample(2, 2.7, first=True, ratio=r) for r in (0.5, 0.6, 0.7)]
    _link(fit_link(samples), source, dest)
    policy = Policy(require_tls=False, bandwidth_mib_s=32)
    repeat = _vm_item(1, "seen", policy, memory_footprint_mib=64)
    repeat.vm.migration_measured_at = "2026-11-20T08:00:00+00:00"
    first = _vm_item(2, "new", policy, memory_rss_mib=200)
    snap = make_snapshot([source, dest], [repeat, first], policy=policy)
    seen, new = (item_estimate(snap, i) for i in (repeat, first))
    fit = fit_link(samples)["tcp"]
    model = precopy(512, 0, 32, policy, touched_mib=64)
    assert seen.memory_transfer_s == pytest.approx(
        fit["setup_s"] + fit["rate_factor"] * model.transfer_s, abs=0.02
    )
    assert seen.touched_source == "measured on 2026-11-20 (last migration)"
    assert seen.setup_source.startswith("fitted on 7 moves between these hosts")
    assert "effective rate 8" in seen.rate_source and not seen.first_move
    assert seen.memory_transfer_low_s < seen.memory_transfer_s < seen.memory_transfer_high_s
    # A first move: the touched memory is corrected by the link's first moves (x0.6) and
    # the interval spans their range on top of the link's error: wider than a repeat's.
    assert new.first_move and new.touched_mib == pytest.approx(120, abs=0.5)
    assert "first moves between these hosts" in new.touched_source
    width = lambda e: (e.memory_transfer_high_s - e.memory_transfer_low_s) / e.memory_transfer_s  # noqa: E731
    assert width(new) > width(seen)
    assert new.uncertainty.startswith("-") and "a first move" in new.uncertainty
    assert "a first move" not in seen.uncertainty
    data = plan_estimate(snap).as_dict()["items"][0]
    for key in (
        "memory_transfer_low_s",
        "memory_transfer_high_s",
        "duration_low_s",
        "duration_high_s",
        "first_move",
        "rate_factor",
        "rate_source",
        "uncertainty",
    ):
        assert key in data


def test_without_history_the_estimate_says_it_assumes_and_a_first_move_is_wider():
    source, dest = make_host(1), make_host(2)
    policy = Policy(require_tls=False, bandwidth_mib_s=32)
    first = _vm_item(1, "new", policy, memory_rss_mib=200)
    seen = _vm_item(2, "seen", policy, memory_footprint_mib=200)
    snap = make_snapshot([source, dest], [first, seen], policy=policy)
    new, old = (item_estimate(snap, i) for i in (first, seen))
    assert new.rate_source.startswith("assumed") and new.rate_factor == 1.0
    assert new.setup_source == "assumed" and "no moves measured" in new.uncertainty
    assert old.memory_transfer_high_s == pytest.approx(old.memory_transfer_s * 1.3, abs=0.02)
    assert new.memory_transfer_low_s < old.memory_transfer_low_s  # 40 %-100 % of rss
    assert new.memory_transfer_s == pytest.approx(old.memory_transfer_s, abs=0.01)


def test_a_tls_move_borrows_a_tcp_fit_with_the_assumed_handshake():
    from migrations_app.calibration import fit_link
    from migrations_app.estimate import ASSUMED_TLS_SETUP_S

    source, dest = make_host(1), make_host(2)
    _link(fit_link([_sample(x, 0.5 + x) for x in (1, 2, 4)]), source, dest)
    policy = Policy(require_tls=True)
    item = make_item(make_vm(memory_footprint_mib=64, dirty_rate_mib_s=0), policy=policy)
    tls = item_estimate(make_snapshot([source, dest], [item], policy=policy), item)
    assert tls.setup_s == pytest.approx(0.5 + ASSUMED_TLS_SETUP_S, abs=0.02)
    assert "without TLS" in tls.setup_source
