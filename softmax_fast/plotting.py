"""Figures of a training run: learning curves (per epoch, or per L-BFGS iteration), weights, the confusion matrix.

Each function draws one figure with pyplot and returns it; the caller saves it
and closes it (or shows it). The command line selects the Agg backend unless
it was asked to show the figures.
"""

import math

import matplotlib.pyplot as plt
import numpy as np


def plot_curves(history, title, best_epoch=None):
    """Loss and accuracy per epoch in two panels, and the learning rate in a third when it changes.

    ``history`` is ``SoftmaxRegression.history_``: train curves always, the
    held-out rows' (early stopping: ``validation_loss``, ``validation_score``)
    and the test data's where present. ``best_epoch`` (the model's
    ``best_epoch_``), if given, is marked in each panel as the epoch whose
    weights early stopping kept. A history of ``solver="lbfgs"`` (records
    by ``iteration``) is drawn by :func:`plot_iterations`; of a history that
    changed solver (a warm start), the records of the last one's kind.
    """
    step = "iteration" if history and "iteration" in history[-1] else "epoch"
    history = [record for record in history if step in record]
    if step == "iteration":
        return plot_iterations(history, title)
    epochs = [record["epoch"] for record in history]
    rates = [record.get("lr") for record in history]
    show_rates = None not in rates and len(set(rates)) > 1
    figure, panels = plt.subplots(1, 3 if show_rates else 2, figsize=(16 if show_rates else 11, 4.2),
                                  layout="constrained")
    loss_axes, accuracy_axes = panels[:2]
    for axes, metric, label in ((loss_axes, "loss", "cross-entropy loss"), (accuracy_axes, "accuracy", "accuracy")):
        axes.plot(epochs, [record[f"train_{metric}"] for record in history], "o-", label="train")
        for key, style, name in ((f"validation_{'score' if metric == 'accuracy' else 'loss'}", "^-.", "held out"),
                                 (f"test_{metric}", "s--", "test")):
            if history and history[0].get(key) is not None:
                axes.plot(epochs, [record[key] for record in history], style, label=name)
        _label(axes, label, best_epoch)
    if show_rates:
        rate_axes = panels[2]
        rate_axes.plot(epochs, rates, "o-", color="tab:purple", label="at the epoch's first batch")
        if max(rates) > 100 * min(rates):
            rate_axes.set_yscale("log")
        _label(rate_axes, "learning rate", best_epoch)
    figure.suptitle(title)
    return figure


def plot_iterations(history, title):
    """An L-BFGS fit per iteration: the objective (and the test loss), the largest gradient component, accuracy.

    ``history`` is ``SoftmaxRegression.history_`` of ``solver="lbfgs"``; the
    accuracy panel is drawn when it has the test data's.
    """
    iterations = [record["iteration"] for record in history]
    with_test = history[0].get("test_loss") is not None
    figure, panels = plt.subplots(1, 3 if with_test else 2, figsize=(16 if with_test else 11, 4.2),
                                  layout="constrained")
    objective_axes, gradient_axes = panels[:2]
    objective_axes.plot(iterations, [record["objective"] for record in history], ".-", label="objective (train)")
    if with_test:
        objective_axes.plot(iterations, [record["test_loss"] for record in history], "--",
                            label="cross-entropy loss (test)")
        accuracy_axes = panels[2]
        accuracy_axes.plot(iterations, [record["test_accuracy"] for record in history], "--", color="tab:orange",
                           label="test")
        _label(accuracy_axes, "accuracy", None, "iteration")
    _label(objective_axes, "objective", None, "iteration")
    gradient_axes.plot(iterations, [record["gradient_norm"] for record in history], ".-", color="tab:green",
                       label="train")
    gradient_axes.set_yscale("log")
    _label(gradient_axes, "largest |gradient| component", None, "iteration")
    figure.suptitle(title)
    return figure


def _label(axes, label, best_epoch, step="epoch"):
    """Axis labels, title, grid, integer steps, the best epoch's marker and the legend of one panel."""
    if best_epoch is not None:
        axes.axvline(best_epoch, color="grey", linestyle=":", label=f"kept: epoch {best_epoch}")
    axes.set_xlabel(step)
    axes.set_ylabel(label)
    axes.set_title(f"{label[0].upper()}{label[1:]} per {step}")
    axes.grid(alpha=0.3)
    axes.legend()
    axes.xaxis.get_major_locator().set_params(integer=True)


def plot_weights(coef, classes, image_shape=(28, 28)):
    """Each class's weight vector ``coef[:, c]`` drawn as an ``image_shape`` image (red +, blue -)."""
    k = coef.shape[1]
    columns = min(k, 5)
    rows = math.ceil(k / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), layout="constrained",
                                squeeze=False)
    limit = float(np.abs(coef).max()) or 1.0
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index < k:
            image = ax.imshow(coef[:, index].reshape(image_shape), cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_title(f"class {classes[index]}")
    figure.colorbar(image, ax=axes, shrink=0.8, label="weight")
    figure.suptitle("Learned weights per class")
    return figure


def plot_confusion(matrix, classes, title):
    """A confusion matrix ``(k, k)`` (rows: true class, columns: predicted), counts written in the cells."""
    figure, ax = plt.subplots(figsize=(1.0 + 0.6 * len(classes), 0.6 + 0.6 * len(classes)), layout="constrained")
    image = ax.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, [str(c) for c in classes])
    ax.set_yticks(ticks, [str(c) for c in classes])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    threshold = matrix.max() / 2
    for (row, column), count in np.ndenumerate(matrix):
        ax.text(column, row, str(count), ha="center", va="center", fontsize=7,
                color="white" if count > threshold else "black")
    figure.colorbar(image, ax=ax, shrink=0.8, label="test images")
    return figure

