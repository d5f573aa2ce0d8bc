"""What a completed migration's job stats teach the next estimate of the VM."""

from migrations_app.execution.services import move_measurements

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


def test_it_measures_no_setup_when_the_move_was_not_capped():
    got = move_measurements(
        {"memory_total": MIB * 8, "memory_constant": 0, "time_elapsed": 900, "data_processed": 1},
        bandwidth_mib_s=None,
        rss_mib=None,
    )
    assert got == {"memory_footprint_mib": 8}
