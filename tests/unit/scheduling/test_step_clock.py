"""StepClock: engine step boundaries from the times response chunks arrive."""

from __future__ import annotations

import pytest

from extproc.scheduling.inflight import InFlight
from extproc.scheduling.step_clock import StepClock


def _clock(*times: float, address: str = "a") -> StepClock:
    clock = StepClock()
    for t in times:
        clock.observe(address, t)
    return clock


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ((1.0,), {}),  # one burst: no step seen yet
        ((1.0, 1.0005, 1.001), {}),  # chunks of one step (each within 2 ms of the last)
        ((1.0, 1.020), {"a": pytest.approx(0.020)}),  # one step, burst start to burst start
        ((1.0, 1.020, 1.045), {"a": pytest.approx(0.025)}),  # median (upper) of 20 and 25 ms
        # A burst spread over time is timed from its first chunk.
        ((1.0, 1.020, 1.0205, 1.041), {"a": pytest.approx(0.021)}),
        # An idle second among steady 20 ms steps does not move the median.
        ((1.0, 1.020, 1.040, 2.040), {"a": pytest.approx(0.020)}),
    ],
)
def test_step_duration_estimate(times: tuple[float, ...], expected: dict[str, float]) -> None:
    assert _clock(*times).estimates() == expected


@pytest.mark.parametrize("first_gap", [0.5, 0.0025], ids=["long", "short"])
def test_a_stray_first_gap_does_not_stick(first_gap: float) -> None:
    times = [0.0, first_gap]
    times += [first_gap + 0.020 * (i + 1) for i in range(20)]
    assert _clock(*times).estimates() == {"a": pytest.approx(0.020)}


@pytest.mark.parametrize(
    ("now", "wait"),
    [
        (1.020, 1.0),  # a step just started: a whole step to wait
        (1.025, 0.75),
        (1.035, 0.25),
        (1.040, 0.0),  # due now
        (1.100, 0.0),  # overdue: idle, or a long step that pending prefill already charges
    ],
)
def test_wait_is_the_fraction_of_a_step_left(now: float, wait: float) -> None:
    clock = _clock(1.0, 1.020)
    assert clock.wait_many(["a"], now) == [pytest.approx(wait)]


def test_unknown_endpoints_wait_nothing() -> None:
    clock = _clock(1.0)
    assert clock.wait_many(["a", "b"], 1.001) == [0.0, 0.0]


def test_inflight_forgets_steps_of_an_endpoint_with_nothing_in_flight() -> None:
    inflight = InFlight()
    inflight.started("a")
    inflight.emitted("a", 1.0)
    inflight.emitted("a", 1.02)
    assert inflight.step_durations() == {"a": pytest.approx(0.02)}
    assert list(inflight.step_phases(["a"])) == [pytest.approx((1.04, 50.0))]
    inflight.finished("a")
    assert inflight.step_durations() == {}
    assert list(inflight.step_phases(["a"])) == [(0.0, 0.0)]


def test_timestamps_that_go_back_make_no_step() -> None:
    # An injected clock may go back; a zero or negative "step" must not become an estimate
    # (1 / estimate is taken on the response path).
    clock = _clock(10.0, 9.0, 10.0, 5.0, 5.5, 1.0, 1.5)
    assert all(v > 0 for v in clock.estimates().values())
