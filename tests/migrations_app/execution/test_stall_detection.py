"""Stall detection reads the bytes still to send over a window, counted from the attempt's
first sample, never from QEMU's absolute iteration counter."""

from migrations_app.execution.stats import StallDetector

GIB = 1024**3


def _feed(detector, samples, start_iteration=1):
    verdicts = []
    for second, (remaining, passes) in enumerate(samples):
        stats = {"memory_remaining": remaining, "memory_iteration": start_iteration + passes}
        verdicts.append(detector.add(float(second), stats))
    return verdicts


def test_it_never_calls_a_geometrically_converging_pre_copy_stalled():
    # Each pass leaves 60 % of the one before: slow, but converging.
    samples = [(int(GIB * 0.6 ** (s // 3)), s // 3) for s in range(40)]
    assert not any(_feed(StallDetector(window_s=6), samples))


def test_it_reports_a_stall_within_a_window_of_its_onset():
    converging = [(int(GIB * 0.5**s), s) for s in range(5)]
    stuck = [(int(GIB * 0.06), 5 + s) for s in range(20)]  # the guest now dirties too fast
    verdicts = _feed(StallDetector(window_s=6), converging + stuck)
    onset = len(converging)
    first = verdicts.index(True)
    assert onset < first <= onset + 7


def test_it_counts_passes_from_the_first_sample_not_qemus_counter():
    # A retry in the same QEMU process: the counter starts at 40 from a cancelled attempt.
    detector = StallDetector(window_s=6)
    samples = [(GIB, 0), (GIB, 0), (GIB // 2, 1)]
    assert not any(_feed(detector, samples, start_iteration=40))
    assert detector.evidence()["passes_since_first_sample"] == 1
