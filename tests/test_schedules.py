"""softmax_fast.schedules: each rate against its formula written out, and the plateau rule step by step."""

import math

import numpy as np
import pytest

from softmax_fast import schedules


@pytest.mark.parametrize("t", [0, 1, 7, 1000])
def test_each_schedule_is_its_formula(t):
    lr, power_t, origin, total = 0.3, 0.25, 5, 2000
    expected = {
        "constant": lr,
        "invscaling": lr / (1 + t) ** power_t,
        "cosine": lr * (1 + math.cos(math.pi * (t - origin) / total)) / 2,
        "adaptive": 0.012,
    }
    for learning_rate, rate in expected.items():
        assert schedules.rate(learning_rate, lr, t, power_t=power_t, origin=origin, total=total,
                              current=0.012) == rate


def test_the_adaptive_rate_is_lr_until_lowered():
    assert schedules.rate("adaptive", 0.3, 10) == 0.3


def test_the_cosine_starts_at_lr_and_ends_above_zero():
    rates = schedules.batch_rates("cosine", 0.5, 100, 50, origin=100, total=50)
    assert rates[0] == 0.5 and rates[25] == pytest.approx(0.25)
    assert 0 < rates[-1] < 0.5 * 1e-3 and np.all(np.diff(rates) < 0)


def test_batch_rates_are_the_rates_of_consecutive_batches_in_float64():
    rates = schedules.batch_rates("invscaling", 0.1, 40, 3, power_t=0.5)
    assert rates.dtype == np.float64
    assert rates.tolist() == [schedules.rate("invscaling", 0.1, t, power_t=0.5) for t in (40, 41, 42)]


def test_the_plateau_counts_epochs_that_do_not_beat_the_best_by_tol():
    plateau = schedules.Plateau()
    steps = [(0.50, True, 0), (0.55, True, 0), (0.5505, True, 1), (0.54, False, 2), (0.57, True, 0)]
    for epoch, (score, best, stalled) in enumerate(steps, start=1):
        assert plateau.update(score, epoch, tol=0.01) is best
        assert plateau.stalled == stalled
    assert (plateau.best_score, plateau.best_epoch) == (0.57, 5)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_a_stalled_plateau_divides_the_adaptive_rate_by_5_until_it_is_spent(early_stopping):
    plateau = schedules.Plateau(best_score=1.0, best_epoch=1, stalled=3)
    assert schedules.after_plateau(plateau, 4, "adaptive", 0.1, 0.1, early_stopping) == (0.1, False)
    plateau.stalled = 4
    assert schedules.after_plateau(plateau, 4, "adaptive", 0.1, 0.1, early_stopping) == (0.1 / 5, False)
    assert plateau.stalled == 0
    plateau.stalled = 4
    # 0.1 / 5**9 < 0.1 * 1e-6: the fit stops at 0.1 / 5**8 rather than go below the floor.
    assert schedules.after_plateau(plateau, 4, "adaptive", 0.1, 0.1 / 5**8, early_stopping) == (0.1 / 5**8, True)


@pytest.mark.parametrize("learning_rate", ["constant", "invscaling", "cosine"])
def test_a_stalled_plateau_stops_only_with_early_stopping(learning_rate):
    plateau = schedules.Plateau(best_score=1.0, best_epoch=1, stalled=2)
    assert schedules.after_plateau(plateau, 2, learning_rate, 0.1, 0.1, early_stopping=True) == (0.1, True)
    assert schedules.after_plateau(plateau, 2, learning_rate, 0.1, 0.1, early_stopping=False) == (0.1, False)
