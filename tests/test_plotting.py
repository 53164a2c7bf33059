"""The figures: labelled axes, one panel per metric, one image per class."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from softmax_fast import plotting  # noqa: E402

HISTORY = [
    {"epoch": e, "train_loss": 1 / e, "train_accuracy": 1 - 0.1 / e, "test_loss": 1.1 / e,
     "test_accuracy": 1 - 0.12 / e, "seconds": 0.1}
    for e in range(1, 4)
]


def test_curves_have_two_labelled_panels_with_train_and_test():
    figure = plotting.plot_curves(HISTORY, "title")
    loss_axes, accuracy_axes = figure.axes
    assert (loss_axes.get_xlabel(), loss_axes.get_ylabel()) == ("epoch", "cross-entropy loss")
    assert (accuracy_axes.get_xlabel(), accuracy_axes.get_ylabel()) == ("epoch", "accuracy")
    for axes in figure.axes:
        assert [line.get_label() for line in axes.get_lines()] == ["train", "test"]
    np.testing.assert_array_equal(loss_axes.get_lines()[1].get_ydata(), [1.1, 0.55, 1.1 / 3])


def test_curves_without_test_data_draw_train_only():
    history = [record | {"test_loss": None, "test_accuracy": None} for record in HISTORY]
    figure = plotting.plot_curves(history, "title")
    assert all(len(axes.get_lines()) == 1 for axes in figure.axes)


def test_curves_show_the_held_out_rows_the_kept_epoch_and_a_changing_rate_in_a_third_panel():
    history = [record | {"lr": 0.2 / record["epoch"], "validation_loss": 1.2 / record["epoch"],
                         "validation_score": 1 - 0.15 / record["epoch"]}
               for record in HISTORY]
    figure = plotting.plot_curves(history, "title", best_epoch=2)
    loss_axes, accuracy_axes, rate_axes = figure.axes
    for axes in (loss_axes, accuracy_axes):
        assert [line.get_label() for line in axes.get_lines()] == ["train", "held out", "test", "kept: epoch 2"]
    np.testing.assert_array_equal(accuracy_axes.get_lines()[1].get_ydata(), [0.85, 0.925, 0.95])
    assert (rate_axes.get_xlabel(), rate_axes.get_ylabel()) == ("epoch", "learning rate")
    np.testing.assert_array_equal(rate_axes.get_lines()[0].get_ydata(), [0.2, 0.1, 0.2 / 3])
    assert rate_axes.get_yscale() == "linear"


def test_a_constant_rate_gets_no_panel_and_a_rate_over_decades_a_log_scale():
    constant = [record | {"lr": 0.2} for record in HISTORY]
    assert len(plotting.plot_curves(constant, "title").axes) == 2
    decaying = [record | {"lr": 0.2 / 1000 ** record["epoch"]} for record in HISTORY]
    assert plotting.plot_curves(decaying, "title").axes[2].get_yscale() == "log"


def test_weights_are_one_28x28_image_per_class():
    coef = np.arange(784 * 10, dtype=np.float32).reshape(784, 10)
    figure = plotting.plot_weights(coef, np.arange(10))
    images = [axes.get_images()[0] for axes in figure.axes if axes.get_images()]
    assert len(images) == 10
    assert images[3].get_array().shape == (28, 28)
    np.testing.assert_array_equal(images[3].get_array(), coef[:, 3].reshape(28, 28))
    assert [axes.get_title() for axes in figure.axes if axes.get_images()][3] == "class 3"


def test_confusion_matrix_figure_writes_the_counts():
    matrix = np.array([[5, 1], [0, 7]])
    figure = plotting.plot_confusion(matrix, np.array(["cat", "dog"]), "title")
    axes = figure.axes[0]
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("predicted class", "true class")
    assert sorted(text.get_text() for text in axes.texts) == ["0", "1", "5", "7"]


LBFGS_HISTORY = [
    {"iteration": i, "objective": 1 / i, "train_loss": 0.9 / i, "gradient_norm": 10.0 ** -i, "test_loss": 1.1 / i,
     "test_accuracy": 1 - 0.1 / i, "seconds": 0.01}
    for i in range(1, 5)
]


def test_an_lbfgs_history_shows_the_objective_and_the_gradient_per_iteration_and_the_test_accuracy():
    objective_axes, gradient_axes, accuracy_axes = plotting.plot_curves(LBFGS_HISTORY, "title").axes
    for axes, label in ((objective_axes, "objective"), (gradient_axes, "largest |gradient| component"),
                        (accuracy_axes, "accuracy")):
        assert (axes.get_xlabel(), axes.get_ylabel()) == ("iteration", label)
    assert [line.get_label() for line in objective_axes.get_lines()] == ["objective (train)",
                                                                          "cross-entropy loss (test)"]
    np.testing.assert_array_equal(objective_axes.get_lines()[0].get_ydata(), [1, 0.5, 1 / 3, 0.25])
    assert gradient_axes.get_yscale() == "log"
    without_test = [record | {"test_loss": None, "test_accuracy": None} for record in LBFGS_HISTORY]
    assert len(plotting.plot_curves(without_test, "title").axes) == 2


def test_a_history_that_changed_solver_draws_the_records_of_the_last_kind():
    sgd_then_lbfgs = HISTORY + [record | {"iteration": record["iteration"] + 3} for record in LBFGS_HISTORY]
    objective_axes = plotting.plot_curves(sgd_then_lbfgs, "title").axes[0]
    np.testing.assert_array_equal(objective_axes.get_lines()[0].get_xdata(), [4, 5, 6, 7])
