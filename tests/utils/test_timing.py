import numpy as np
import pytest

from seo_export.utils import timing


@pytest.fixture
def clock(monkeypatch):
    """A fake clock: sleeping and calling contenders advance it by known amounts."""
    state = {"now": 0.0, "log": []}

    def sleep(seconds):
        state["log"].append(("sleep", seconds))
        state["now"] += seconds

    monkeypatch.setattr(timing.time, "sleep", sleep)
    monkeypatch.setattr(timing.time, "perf_counter", lambda: state["now"])
    return state


def _contender(clock, name, seconds):
    def call():
        clock["log"].append(("call", name))
        clock["now"] += seconds
    return call


def test_each_timed_call_follows_a_pause_that_is_not_in_its_sample(clock):
    contenders = {"a": _contender(clock, "a", 0.5), "b": _contender(clock, "b", 0.25)}
    samples = timing.interleaved_times(contenders, rounds=2, warmup=1, settle_s=0.02)
    assert samples == {"a": [0.5, 0.5], "b": [0.25, 0.25]}
    # Warm-up runs back to back; then every timed call comes right after a settle pause.
    assert clock["log"] == [("call", "a"), ("call", "b")] + [
        ("sleep", 0.02), ("call", "a"), ("sleep", 0.02), ("call", "b")] * 2


def test_a_contender_that_leaves_threads_spinning_gets_a_longer_settle_after_it(clock):
    """numpy's BLAS spins ~0.1 s after a call: whatever follows it, in this round or the next, waits longer."""
    contenders = {"a": _contender(clock, "a", 0.5), "np": _contender(clock, "np", 0.25)}
    timing.interleaved_times(contenders, rounds=2, warmup=0, settle_s=0.02, settle_after={"np": 0.3})
    assert clock["log"] == [("sleep", 0.3), ("call", "a"), ("sleep", 0.02), ("call", "np")] * 2


def test_a_warm_sample_is_the_mean_of_back_to_back_calls_after_untimed_ones(clock):
    calls = iter([0.4, 0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3])  # the first, untimed call of each round is slow

    def call():
        clock["log"].append(("call", "a"))
        clock["now"] += next(calls)

    samples = timing.interleaved_times({"a": call}, rounds=2, warmup=0, settle_s=0.02, calls=3, warm_calls=1)
    assert samples["a"] == pytest.approx([0.2, 0.2])
    assert clock["log"] == [("sleep", 0.02)] + [("call", "a")] * 4 + [("sleep", 0.02)] + [("call", "a")] * 4


def test_no_pause_when_settle_is_zero(clock):
    timing.interleaved_times({"a": _contender(clock, "a", 0.1)}, rounds=3, warmup=0, settle_s=0.0)
    assert all(kind == "call" for kind, _ in clock["log"])


def test_ratio_median_pairs_samples_round_by_round():
    # Per-round ratios 2, 3 and 0.5 -> 2; the ratio of the two medians would be 3 / 1 = 3.
    assert timing.ratio_median([2.0, 3.0, 9.0], [1.0, 1.0, 18.0]) == pytest.approx(2.0)
    assert timing.ratio_median([1.0, 4.0], [2.0, 2.0]) == pytest.approx(1.25)


def test_percentile_interpolates_between_ranks():
    assert timing.percentile([4.0, 1.0, 3.0, 2.0], 50) == pytest.approx(2.5)
    assert timing.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)


# ----------------------------------------------------------------------------- speedup interval

def test_speedup_interval_is_exact_for_a_constant_ratio():
    torch_s = [2.0, 2.6, 1.9, 3.1, 2.2, 2.4]
    low, high = timing.speedup_interval(torch_s, [t / 1.25 for t in torch_s])
    assert low == pytest.approx(1.25) and high == pytest.approx(1.25)


def test_speedup_interval_covers_the_true_speedup_about_95_percent_of_the_time():
    # 200 seeded benches of 12 rounds with 10% lognormal noise on each call; true speedup 0.95.
    hits = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        torch_s = 2.3 * np.exp(0.1 * rng.standard_normal(12))
        ort_s = 2.3 / 0.95 * np.exp(0.1 * rng.standard_normal(12))
        low, high = timing.speedup_interval(list(torch_s), list(ort_s))
        assert low <= high
        hits += low <= 0.95 <= high
    assert 0.88 <= hits / 200 <= 0.99


def test_speedup_interval_narrows_with_more_rounds():
    def width(rounds):
        rng = np.random.default_rng(1)
        torch_s = np.exp(0.1 * rng.standard_normal(rounds))
        low, high = timing.speedup_interval(list(torch_s), list(np.exp(0.1 * rng.standard_normal(rounds))))
        return high - low
    assert width(200) < width(10) / 2


def test_speedup_interval_keeps_rounds_paired():
    # Drift common to a round (x1 .. x3) is far larger than the per-call noise (1%); resampling
    # whole rounds keeps each torch sample with its ORT sample, so the drift cancels.
    rng = np.random.default_rng(0)
    drift = np.linspace(1.0, 3.0, 20)
    rng.shuffle(drift)
    torch_s = drift * np.exp(0.01 * rng.standard_normal(20))
    ort_s = drift / 1.1 * np.exp(0.01 * rng.standard_normal(20))
    low, high = timing.speedup_interval(list(torch_s), list(ort_s))
    assert low < 1.1 < high and high - low < 0.1


def test_speedup_interval_needs_enough_paired_rounds():
    assert timing.speedup_interval([1.0] * 4, [1.0] * 4) is None
    with pytest.raises(ValueError, match="differ in length"):
        timing.speedup_interval([1.0] * 6, [1.0] * 5)


def test_speedup_records_the_ratio_of_medians_and_its_interval():
    record = timing.speedup([2.0, 4.0, 2.0, 2.0, 2.0], [1.0, 2.0, 1.0, 1.0, 1.0])
    assert record["median"] == 2.0 and record["interval_95"] == pytest.approx((2.0, 2.0))
    assert timing.speedup([2.0, 2.0], [1.0, 1.0])["interval_95"] is None  # too few rounds for an interval
