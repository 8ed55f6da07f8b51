import time

from adcsr.timing import interleaved, summarize


def test_interleaved_medians_track_relative_cost():
    calls = []

    def cheap():
        calls.append("cheap")
        time.sleep(0.002)

    def costly():
        calls.append("costly")
        time.sleep(0.008)

    times = interleaved({"cheap": cheap, "costly": costly}, repeats=6, warmup=1)
    assert len(times["cheap"]) == len(times["costly"]) == 6
    ratio = summarize(times["costly"])["median_ms"] / summarize(times["cheap"])["median_ms"]
    assert 2.0 < ratio < 6.0
    # warm-up first, then the order rotates every round: each model leads some rounds
    rounds = [calls[i:i + 2] for i in range(2, len(calls), 2)]
    assert {r[0] for r in rounds} == {"cheap", "costly"}


def test_summarize_reports_median_not_mean():
    s = summarize([0.001, 0.002, 0.100])
    assert abs(s["median_ms"] - 2.0) < 1e-9
    assert s["repeats"] == 3 and s["max_ms"] == 100.0


def test_matmul_peak_is_a_rate_for_every_backend_precision():
    """The roofline's denominator: a positive finite GMAC/s for each precision a backend declares."""
    import math

    from adcsr.backends import BACKENDS
    from adcsr.timing import matmul_peak_gmacs

    for precision in {b.precision for b in BACKENDS.values()}:
        rate = matmul_peak_gmacs(precision, n=256, repeats=2)
        assert 0 < rate < math.inf
