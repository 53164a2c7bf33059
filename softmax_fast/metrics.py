"""Classification metrics computed from labels."""

import numpy as np


def confusion_matrix(y_true, y_pred, classes):
    """Counts ``(k, k)``: row ``i``, column ``j`` is how many of class ``classes[i]`` were predicted ``classes[j]``."""
    true_index = np.searchsorted(classes, y_true)
    predicted_index = np.searchsorted(classes, y_pred)
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (true_index, predicted_index), 1)
    return matrix
