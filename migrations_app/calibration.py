"""Learning the pre-copy model's per-link inputs from the moves Ferry has completed.

The model (migrations_app.estimate) stays what it is; what it cannot know from the
inventory is learnt here, per pair of hosts (a link, both directions) and per transport
(TLS or not), from the evidence every completed live attempt stores:

- `model_s`: the model's pre-copy time for that very move, re-run with what the move
  measured (the footprint QEMU really sent as touched memory, the dirty rate and the
  bandwidth the plan used);
- `total_s`: libvirt's total time of the migrate call.

On the moves QEMU did not throttle, total = setup + k x model_s is fitted by least squares:
`setup` is the link's fixed cost (destination start, handshake), `k` the inverse of the
effective rate (1.25 = the link carries 80 % of the bandwidth the model assumed). On the
throttled moves (auto-converge) a separate factor is the median of (total - setup) /
model_s: QEMU's throttle steps and bitmap syncs pace those moves below the cap. The spread
of each is the 80th percentile of the leave-one-out relative errors (each move predicted by
a fit without it), so a link with few or noisy moves gets a wide interval.

A VM's first move has one more unknown: its touched memory comes from rss (an upper bound)
less the host's QEMU overhead. The ratio of the footprint a first move then measured to
that figure is learnt too (median and 10th-90th percentiles over the link's first moves),
so later first moves are corrected by it and their interval spans it.
"""

from __future__ import annotations

import statistics

FIT_SAMPLES = 30  # newest completed moves of a link kept for the fit
MIN_SAMPLES = 3  # fewer: the estimate keeps its assumptions (and says so)
SLOPE_RANGE = (0.7, 2.5)  # an effective rate 40 %-143 % of the assumed bandwidth
THROTTLED_RANGE = (0.7, 3.0)
SPREAD_FLOOR = 0.05  # never claim more than ±5 %
SPREAD_QUANTILE = 0.8
# With no fit on the link: the relative half-width of a repeat move's interval, and the
# range of a first move's footprint as a share of its rss-based figure (rss is an upper
# bound; an idle guest's footprint can be a small part of it). Priors, not fitted values.
PRIOR_SPREAD = 0.30
PRIOR_FIRST_TOUCHED = (0.4, 1.0, 1.0)  # low, middle (what the point uses), high


def move_sample(
    *,
    total_ms,
    model_s: float,
    throttled: bool,
    tls: bool,
    first_move: bool,
    touched_est_mib: float | None,
    footprint_mib: float | None,
    at: str,
) -> dict | None:
    """What one completed move teaches the link (None when it measured no time)."""
    if not total_ms or total_ms <= 0 or model_s is None or model_s < 0:
        return None
    sample = {
        "total_s": round(total_ms / 1000, 3),
        "model_s": round(float(model_s), 3),
        "throttled": bool(throttled),
        "tls": bool(tls),
        "first_move": bool(first_move),
        "at": at,
    }
    if first_move and touched_est_mib and footprint_mib:
        sample["touched_ratio"] = round(float(footprint_mib) / float(touched_est_mib), 3)
    return sample


def _quantile(values: list, q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _clamp(value: float, bounds: tuple) -> float:
    return min(max(value, bounds[0]), bounds[1])


def fit_line(points: list) -> tuple[float, float]:
    """setup, k of total = setup + k x model over (model_s, total_s) points.

    Least squares when the points spread along x (at least 30 % and 0.5 s between the
    shortest and longest); otherwise k = 1 and setup the median of what is left. k is
    bounded (SLOPE_RANGE) and setup is never negative.
    """
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    if len(points) >= 2:
        lo, hi = min(xs), max(xs)
        if hi - lo >= 0.5 and hi >= 1.3 * max(lo, 1e-9):
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            var = sum((x - mx) ** 2 for x in xs)
            slope = sum((x - mx) * (y - my) for x, y in points) / var
            k = _clamp(slope, SLOPE_RANGE)
            setup = my - k * mx
            if k != slope or setup < 0:
                setup = statistics.median(y - k * x for x, y in points)
            return max(setup, 0.0), k
    return max(statistics.median(y - x for x, y in points), 0.0), 1.0


def _spread(points: list, predict) -> float:
    """80th percentile of the leave-one-out relative errors of `predict(train, x)`."""
    errors = []
    for i, (x, y) in enumerate(points):
        rest = points[:i] + points[i + 1 :]
        if y > 0:
            errors.append(abs(predict(rest, x) - y) / y)
    return max(_quantile(errors, SPREAD_QUANTILE), SPREAD_FLOOR)


def _throttled_factor(points: list, setup: float) -> float:
    ratios = [(y - setup) / x for x, y in points if x > 0]
    return _clamp(statistics.median(ratios), THROTTLED_RANGE) if ratios else 1.0


def fit_transport(samples: list) -> dict | None:
    """The fit of one transport's samples (None with fewer than MIN_SAMPLES moves)."""
    plain = [(s["model_s"], s["total_s"]) for s in samples if not s["throttled"]]
    throttled = [(s["model_s"], s["total_s"]) for s in samples if s["throttled"]]
    if len(plain) + len(throttled) < MIN_SAMPLES:
        return None
    fit: dict = {
        "moves": len(plain) + len(throttled),
        "plain_moves": len(plain),
        "throttled_moves": len(throttled),
        "last": max(s["at"] for s in samples),
    }
    if plain:
        setup, k = fit_line(plain)
    else:
        setup, k = 0.0, 1.0
    fit["setup_s"] = round(setup, 3)
    fit["rate_factor"] = round(k, 3)
    if len(plain) >= MIN_SAMPLES:

        def line(rest, x):
            a, b = fit_line(rest)
            return a + b * x

        fit["spread"] = round(_spread(plain, line), 3)
    if throttled:
        fit["throttled_factor"] = round(_throttled_factor(throttled, setup), 3)
        if len(throttled) >= MIN_SAMPLES:
            fit["throttled_spread"] = round(
                _spread(throttled, lambda rest, x: setup + _throttled_factor(rest, setup) * x), 3
            )
    return fit


def fit_link(samples: list) -> dict:
    """A link's fit: per transport ("tls", "tcp"), and the first-move touched ratio."""
    out: dict = {}
    for name, tls in (("tls", True), ("tcp", False)):
        fit = fit_transport([s for s in samples if s["tls"] is tls])
        if fit:
            out[name] = fit
    ratios = [s["touched_ratio"] for s in samples if s.get("touched_ratio")]
    if len(ratios) >= MIN_SAMPLES:
        out["first_touched"] = {
            "low": round(_quantile(ratios, 0.1), 3),
            "median": round(statistics.median(ratios), 3),
            "high": round(_quantile(ratios, 0.9), 3),
            "moves": len(ratios),
        }
    return out


class LinkInputs:
    """What the estimate of one move takes from its link's fit (or the priors), labelled."""

    def __init__(self):
        self.fit: dict | None = None
        self.setup_s = 0.0
        self.setup_source = ""
        self.rate_factor = 1.0
        self.rate_source = "assumed: the full bandwidth (no moves measured between these hosts)"
        self.spread = PRIOR_SPREAD
        self.spread_source = (
            f"±{PRIOR_SPREAD:.0%} assumed: no moves measured between these hosts yet"
        )
        self.throttled_factor = 1.0
        self.throttled_source = self.rate_source
        self.throttled_spread = PRIOR_SPREAD
        self.throttled_spread_source = self.spread_source
        self.touched: tuple | None = None  # first moves: (low, middle, high, why) factors
        self.touched_basis = ""


def link_inputs(source, dest, policy, *, first_move: bool, tls_setup_s: float) -> LinkInputs:
    """The learnt inputs of a move from `source` to `dest` under `policy`.

    The fit of the policy's transport wins; a link measured only with the other transport
    lends its rate and spread, its setup moved by the assumed TLS handshake `tls_setup_s`.
    """
    out = LinkInputs()
    fits = {}
    if source is not None and dest is not None:
        fits = (getattr(source, "link_fits", None) or {}).get(str(dest.id)) or {}
    want = "tls" if policy.require_tls else "tcp"
    fit, adjust, via = fits.get(want), 0.0, ""
    if fit is None and fits.get("tcp" if want == "tls" else "tls"):
        fit = fits["tcp" if want == "tls" else "tls"]
        adjust = tls_setup_s if want == "tls" else -tls_setup_s
        via = (
            f" without TLS (+{tls_setup_s:g} s assumed for the TLS handshake)"
            if want == "tls"
            else f" with TLS (less {tls_setup_s:g} s assumed for the TLS handshake)"
        )
    if fit:
        where = f"{fit['moves']} moves between these hosts{via}, last on {fit['last'][:10]}"
        out.fit = fit
        out.setup_s = max(fit["setup_s"] + adjust, 0.0)
        out.setup_source = f"fitted on {where}"
        if fit["plain_moves"]:
            out.rate_factor = fit["rate_factor"]
            out.rate_source = (
                f"effective rate {1 / out.rate_factor:.0%} of the bandwidth, fitted on {where}"
            )
        if "spread" in fit:
            out.spread = fit["spread"]
            out.spread_source = (
                f"±{out.spread:.0%}: the 80th percentile of the errors on {fit['plain_moves']} "
                "unthrottled moves between these hosts, each predicted without itself"
            )
        else:
            out.spread_source = (
                f"±{PRIOR_SPREAD:.0%} assumed: fewer than {MIN_SAMPLES} unthrottled moves "
                "measured between these hosts"
            )
        out.throttled_factor = fit.get("throttled_factor", out.rate_factor)
        out.throttled_source = (
            f"auto-converge paces the move at {1 / out.throttled_factor:.0%} of the model's "
            f"rate, fitted on {fit['throttled_moves']} throttled moves of {where}"
            if "throttled_factor" in fit
            else out.rate_source
        )
        if "throttled_spread" in fit:
            out.throttled_spread = fit["throttled_spread"]
            out.throttled_spread_source = (
                f"±{out.throttled_spread:.0%}: the 80th percentile of the errors on "
                f"{fit['throttled_moves']} throttled moves between these hosts, each "
                "predicted without itself"
            )
        else:
            out.throttled_spread = max(out.spread, PRIOR_SPREAD)
            out.throttled_spread_source = (
                f"±{out.throttled_spread:.0%} assumed: fewer than {MIN_SAMPLES} throttled "
                "moves measured between these hosts"
            )
    if first_move:
        first = fits.get("first_touched")
        if first:
            out.touched = (
                first["low"],
                first["median"],
                max(first["high"], first["median"]),
                f"x{first['median']:g}, the median footprint/estimate ratio of "
                f"{first['moves']} first moves between these hosts",
            )
            out.touched_basis = (
                f"first moves between these hosts measured {first['low']:.0%}-"
                f"{first['high']:.0%} of the figure"
            )
        else:
            low, mid, high = PRIOR_FIRST_TOUCHED
            out.touched = (low, mid, high, "")
            out.touched_basis = f"assumed {low:.0%}-{high:.0%} of the figure"
    return out
