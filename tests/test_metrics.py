"""confusion_matrix against counts written out by hand."""

import numpy as np

from softmax_fast.metrics import confusion_matrix


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    classes = np.array([2, 5, 9])
    y_true = np.array([2, 2, 5, 9, 9, 9])
    y_pred = np.array([2, 5, 5, 9, 2, 9])
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, classes), [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
