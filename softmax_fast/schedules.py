"""Learning-rate schedules and the plateau rule: the rate of every batch, and when a fit lowers it or stops.

This module owns the arithmetic of :class:`~softmax_fast.SoftmaxRegression`'s
``learning_rate`` parameter and of its ``early_stopping``:

* :func:`batch_rates`: the rate of each batch of a kernel call, in float64 (the
  kernels convert it to the weights' dtype), from ``t``, the count of batches
  trained since the weights were initialised:

  - ``"constant"``: ``lr``;
  - ``"invscaling"``: ``lr / (1 + t) ** power_t`` (scikit-learn's ``SGDClassifier``
    with ``t`` counting batches rather than rows);
  - ``"cosine"``: ``lr * (1 + cos(pi * (t - origin) / total)) / 2``, ``origin``
    the ``t`` at which the fit began and ``total`` the batches of all its
    epochs (PyTorch's ``CosineAnnealingLR`` with ``eta_min = 0`` and
    ``T_max = total``, stepped every batch);
  - ``"adaptive"``: the fit's current rate, ``lr`` until :class:`Plateau` lowers it.

  Each rate is computed as one Python float from its own ``t``, so a batch's
  rate does not depend on which kernel call it falls in (a resumed fit gets the
  same bits).
* :class:`Plateau`: scikit-learn's rule for ``n_iter_no_change`` and ``tol``,
  shared by the adaptive schedule and by early stopping. After each epoch of a
  fit it counts epochs whose score (the validation accuracy with early stopping,
  else minus the training loss) did not beat the best by at least ``tol``; when
  that count reaches ``n_iter_no_change``, the adaptive schedule divides its rate
  by 5 (and the fit stops when the rate would fall below ``lr * 1e-6``), and
  early stopping with another schedule stops the fit.

Not here: where the state is kept and stored (the estimator and
:mod:`softmax_fast.model_file`), the training loop and the held-out rows (the
estimator).
"""

import dataclasses
import math

import numpy as np

LEARNING_RATES = ("constant", "invscaling", "cosine", "adaptive")
#: The adaptive schedule divides its rate by this when the score stalls ...
ADAPTIVE_DIVISOR = 5
#: ... and a fit stops when the rate would fall below ``lr`` times this.
ADAPTIVE_FLOOR = 1e-6


def rate(learning_rate, lr, t, *, power_t=0.5, origin=0, total=1, current=None):
    """The learning rate of the batch ``t`` (counted from 0 since the weights were initialised), a float.

    ``origin`` and ``total`` are the cosine's start and length in batches;
    ``current`` is the adaptive schedule's present rate (``None``: ``lr``).
    """
    if learning_rate == "invscaling":
        return lr / (1 + t) ** power_t
    if learning_rate == "cosine":
        return lr * (1 + math.cos(math.pi * (t - origin) / total)) / 2
    if learning_rate == "adaptive" and current is not None:
        return current
    return float(lr)


def batch_rates(learning_rate, lr, first, n_batches, **schedule):
    """The rates of the ``n_batches`` batches from batch ``first`` on: ``(n_batches,)`` float64.

    ``schedule`` holds :func:`rate`'s keyword arguments.
    """
    return np.array([rate(learning_rate, lr, t, **schedule) for t in range(first, first + n_batches)],
                    dtype=np.float64)


@dataclasses.dataclass
class Plateau:
    """scikit-learn's count of epochs without an improvement of at least ``tol`` of a score to maximise.

    ``best_score`` is the highest score seen (``None`` before the first epoch),
    ``best_epoch`` the epoch that reached it, ``stalled`` the epochs since the
    last one that beat the best by ``tol`` or more.
    """

    best_score: float | None = None
    best_epoch: int | None = None
    stalled: int = 0

    def update(self, score, epoch, tol):
        """Count ``epoch``'s ``score``; returns whether it is a new best (higher than every one before)."""
        if self.best_score is not None and score < self.best_score + tol:
            self.stalled += 1
        else:
            self.stalled = 0
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch = float(score), epoch
            return True
        return False


def after_plateau(plateau, n_iter_no_change, learning_rate, lr, current, early_stopping):
    """``(current rate, stop)`` once an epoch is counted: what the stalled count asks of the fit.

    When ``plateau.stalled`` reaches ``n_iter_no_change``: the adaptive
    schedule divides ``current`` by :data:`ADAPTIVE_DIVISOR` and starts counting
    again, or asks to stop if that would fall below ``lr *`` :data:`ADAPTIVE_FLOOR`;
    with another schedule, early stopping asks to stop. Otherwise nothing changes.
    """
    if plateau.stalled < n_iter_no_change:
        return current, False
    if learning_rate == "adaptive":
        lowered = current / ADAPTIVE_DIVISOR
        if lowered < lr * ADAPTIVE_FLOOR:
            return current, True
        plateau.stalled = 0
        return lowered, False
    return current, early_stopping
