import pytest

from seo_export.bench import timing


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
