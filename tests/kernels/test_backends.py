"""The compiled backends against the NumPy reference, and every backend (the reference too) against answers known
without it, for every dtype and input kind."""

import numpy as np
import pytest

from problems import INPUT_KINDS, assert_close, make_problem, options_for_step, training_options

BATCH_SIZE = 128

# (n, d, k, logits): n not a multiple of the batch size, n below it, two classes,
# one feature, MNIST's shape, rows of more than 512 features that end in a
# short vector with as many classes as one pass of the compiled logits takes
# (16), more classes than that (the compiled kernels' GEMM loops, in panels
# of 64 float32 or 32 float64 classes and tiles of 6 rows: 19 and 40 classes
# fill part of one panel, 70 fills one or two and part of the next), enough
# rows that a thread's share of the GEMMs' tiles is packed in more than one
# cache-sized block (Numba's _block_tiles: 200 tiles of rows for the logits,
# and 1200 rows deep for the gradient), logits of magnitude ~1000, and all
# logits tied.
SHAPES = {
    "n_not_multiple_of_batch": (300, 20, 5, "moderate"),
    "n_below_batch": (50, 20, 5, "moderate"),
    "two_classes": (200, 10, 2, "moderate"),
    "one_feature": (150, 1, 3, "moderate"),
    "mnist_shape": (300, 784, 10, "moderate"),
    "long_rows": (130, 531, 16, "moderate"),
    "many_classes": (150, 37, 40, "moderate"),
    "many_classes_long_rows": (70, 531, 19, "moderate"),
    "many_panels": (130, 50, 70, "moderate"),
    "many_blocks": (1200, 120, 20, "moderate"),
    "large_logits": (150, 784, 10, "large"),
    "ties": (130, 20, 5, "ties"),
}
# Many SGD steps amplify float32 rounding in logits of magnitude ~1000 far past
# 1e-4, so multi-step comparisons use the well-conditioned shapes only.
EPOCH_SHAPES = [name for name, shape in SHAPES.items() if shape[3] == "moderate"]


def problem(shape_name, dtype, input_kind):
    n, d, k, logits = SHAPES[shape_name]
    return make_problem(n, d, k, dtype, input_kind, logits=logits)


def logits_of(shape_name, dtype):
    X, y, W, b, scale = problem(shape_name, dtype, "float")
    return (X * scale) @ W + b, y


@pytest.mark.parametrize("shape_name", SHAPES)
def test_softmax(compiled_backend, reference, shape_name, dtype):
    Z, _ = logits_of(shape_name, dtype)
    P = compiled_backend.softmax(Z)
    assert P.dtype == Z.dtype and P.shape == Z.shape
    assert_close(P, reference.softmax(Z), dtype)


def test_softmax_writes_into_out_and_in_place(backend, reference, dtype):
    Z, _ = logits_of("n_not_multiple_of_batch", dtype)
    expected = reference.softmax(Z)
    out = np.empty_like(Z)
    assert backend.softmax(Z, out=out) is out
    assert_close(out, expected, dtype)
    assert backend.softmax(Z, out=Z) is Z
    assert_close(Z, expected, dtype)


@pytest.mark.parametrize("shape_name", SHAPES)
def test_cross_entropy(compiled_backend, reference, shape_name, dtype):
    Z, y = logits_of(shape_name, dtype)
    loss = compiled_backend.cross_entropy(Z, y)
    assert isinstance(loss, float)
    assert_close(loss, reference.cross_entropy(Z, y), dtype)


@pytest.mark.parametrize("shape_name", SHAPES)
def test_loss_and_grad(compiled_backend, reference, shape_name, dtype, input_kind):
    X, y, W, b, scale = problem(shape_name, dtype, input_kind)
    W_before, b_before = W.copy(), b.copy()
    loss, dW, db = compiled_backend.loss_and_grad(X, y, W, b, scale)
    expected_loss, expected_dW, expected_db = reference.loss_and_grad(X, y, W, b, scale)
    assert dW.dtype == W.dtype and db.dtype == W.dtype
    assert_close(loss, expected_loss, dtype)
    assert_close(dW, expected_dW, dtype)
    assert_close(db, expected_db, dtype)
    np.testing.assert_array_equal(W, W_before)
    np.testing.assert_array_equal(b, b_before)


# 15,000 rows of 300 features span at least two of the compiled loss_and_grad's blocks of rows (2 MiB of rows
# and their logits' gradient, at least 256 rows) and end in a short one, for every dtype, input kind and k.
BLOCKS_SHAPE = (15_000, 300)


@pytest.mark.parametrize("k", [10, 40], ids=lambda k: f"k{k}")
def test_loss_and_grad_over_several_blocks_of_rows_matches_the_reference_on_any_thread_count(
        compiled_backend, reference, k, dtype, input_kind):
    X, y, W, b, scale = make_problem(*BLOCKS_SHAPE, k, dtype, input_kind)
    options = dict(alpha=1e-3, sample_weight=np.random.default_rng(3).uniform(0, 2, len(y)).astype(dtype))
    one_thread = compiled_backend.loss_and_grad(X, y, W, b, scale, n_threads=1, **options)
    for got, want, on_two_threads in zip(one_thread, reference.loss_and_grad(X, y, W, b, scale, **options),
                                         compiled_backend.loss_and_grad(X, y, W, b, scale, n_threads=2, **options)):
        assert_close(got, want, dtype)
        np.testing.assert_array_equal(on_two_threads, got)


@pytest.mark.parametrize("shape_name", SHAPES)
def test_sgd_step(compiled_backend, reference, shape_name, dtype, input_kind):
    X, y, W, b, scale = problem(shape_name, dtype, input_kind)
    W_ref, b_ref = W.copy(), b.copy()
    loss, n_correct = compiled_backend.sgd_step(X, y, W, b, 0.2, scale)
    expected_loss, expected_correct = reference.sgd_step(X, y, W_ref, b_ref, 0.2, scale)
    assert_close(loss, expected_loss, dtype)
    assert n_correct == expected_correct
    assert_close(W, W_ref, dtype)
    assert_close(b, b_ref, dtype)


@pytest.mark.parametrize("shape_name", EPOCH_SHAPES)
def test_train_epoch(compiled_backend, reference, shape_name, dtype, input_kind):
    X, y, W, b, scale = problem(shape_name, dtype, input_kind)
    W_ref, b_ref = W.copy(), b.copy()
    loss, accuracy = compiled_backend.train_epoch(X, y, W, b, 0.2, BATCH_SIZE, scale)
    expected_loss, expected_accuracy = reference.train_epoch(X, y, W_ref, b_ref, 0.2, BATCH_SIZE, scale)
    assert_close(loss, expected_loss, dtype)
    assert accuracy == expected_accuracy
    assert_close(W, W_ref, dtype)
    assert_close(b, b_ref, dtype)


@pytest.mark.parametrize("shape_name", EPOCH_SHAPES)
def test_train_epoch_equals_looped_sgd_step(backend, shape_name, dtype, input_kind):
    X, y, W, b, scale = problem(shape_name, dtype, input_kind)
    W_loop, b_loop = W.copy(), b.copy()
    loss, accuracy = backend.train_epoch(X, y, W, b, 0.2, BATCH_SIZE, scale)
    batch_losses, n_correct = [], 0
    for start in range(0, len(y), BATCH_SIZE):
        rows = slice(start, start + BATCH_SIZE)
        batch_loss, batch_correct = backend.sgd_step(X[rows], y[rows], W_loop, b_loop, 0.2, scale)
        batch_losses.append(batch_loss)
        n_correct += batch_correct
    np.testing.assert_array_equal(W, W_loop)
    np.testing.assert_array_equal(b, b_loop)
    assert loss == pytest.approx(np.mean(batch_losses), rel=1e-15)
    assert accuracy == n_correct / len(y)


@pytest.mark.parametrize("input_kind", INPUT_KINDS)
def test_ten_float64_epochs_match_reference(compiled_backend, reference, input_kind):
    X, y, W, b, scale = make_problem(1000, 784, 10, np.float64, input_kind, seed=1)
    W_ref, b_ref = W.copy(), b.copy()
    for _ in range(10):
        result = compiled_backend.train_epoch(X, y, W, b, 0.2, BATCH_SIZE, scale)
        expected = reference.train_epoch(X, y, W_ref, b_ref, 0.2, BATCH_SIZE, scale)
    np.testing.assert_allclose(result, expected, rtol=1e-8)
    np.testing.assert_allclose(W, W_ref, rtol=1e-8, atol=1e-8 * np.abs(W_ref).max())
    np.testing.assert_allclose(b, b_ref, rtol=1e-8, atol=1e-8 * np.abs(b_ref).max())


# The training options together: k = 3 and 10 take the compiled kernels' narrow loops, 40 their GEMMs.
OPTION_CLASS_COUNTS = [3, 10, 40]
OPTION_EPOCHS = 3


def copies(*arrays):
    return [array.copy() for array in arrays]


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
@pytest.mark.parametrize("k", OPTION_CLASS_COUNTS, ids=lambda k: f"k{k}")
def test_every_option_at_once_matches_the_reference(compiled_backend, reference, k, nesterov, dtype, input_kind):
    X, y, W, b, scale = make_problem(300, 60, k, dtype, input_kind, seed=3)
    options = training_options(X, W, b, BATCH_SIZE, nesterov)
    first = slice(0, BATCH_SIZE)

    penalty_and_weights = dict(alpha=options["alpha"], sample_weight=options["sample_weight"])
    for got, want in zip(compiled_backend.loss_and_grad(X, y, W, b, scale, **penalty_and_weights),
                         reference.loss_and_grad(X, y, W, b, scale, **penalty_and_weights)):
        assert_close(got, want, dtype)

    reference_options = options | dict(velocity=tuple(copies(*options["velocity"])))
    W_ref, b_ref = copies(W, b)
    W_step, b_step = copies(W, b)
    step = compiled_backend.sgd_step(X[first], y[first], W_step, b_step, scale=scale, **options_for_step(options, first))
    expected_step = reference.sgd_step(X[first], y[first], W_ref, b_ref, scale=scale,
                                       **options_for_step(reference_options, first))
    assert_close(step[0], expected_step[0], dtype)
    assert step[1] == expected_step[1]
    for trained, expected in zip([W_step, b_step, *options["velocity"]], [W_ref, b_ref, *reference_options["velocity"]]):
        assert_close(trained, expected, dtype)

    # Epochs go on from the step's weights and velocities, with a new falling schedule each epoch.
    for epoch in range(OPTION_EPOCHS):
        rates = options["lr"] / (1 + epoch)
        result = compiled_backend.train_epoch(X, y, W_step, b_step, batch_size=BATCH_SIZE, scale=scale,
                                              **options | dict(lr=rates))
        expected = reference.train_epoch(X, y, W_ref, b_ref, batch_size=BATCH_SIZE, scale=scale,
                                         **reference_options | dict(lr=rates))
        assert_close(result[0], expected[0], dtype)
    for trained, expected in zip([W_step, b_step, *options["velocity"]], [W_ref, b_ref, *reference_options["velocity"]]):
        assert_close(trained, expected, dtype)


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
def test_train_epoch_with_every_option_equals_looped_sgd_step(backend, nesterov, dtype, input_kind):
    X, y, W, b, scale = make_problem(300, 60, 10, dtype, input_kind, seed=4)
    options = training_options(X, W, b, BATCH_SIZE, nesterov)
    loop_options = options | dict(velocity=tuple(copies(*options["velocity"])))
    W_loop, b_loop = copies(W, b)
    loss, accuracy = backend.train_epoch(X, y, W, b, batch_size=BATCH_SIZE, scale=scale, **options)
    batch_losses, n_correct = [], 0
    for index, start in enumerate(range(0, len(y), BATCH_SIZE)):
        rows = slice(start, start + BATCH_SIZE)
        batch_loss, batch_correct = backend.sgd_step(
            X[rows], y[rows], W_loop, b_loop, scale=scale,
            **loop_options | dict(lr=options["lr"][index], sample_weight=options["sample_weight"][rows]))
        batch_losses.append(batch_loss)
        n_correct += batch_correct
    for trained, looped in zip([W, b, *options["velocity"]], [W_loop, b_loop, *loop_options["velocity"]]):
        np.testing.assert_array_equal(trained, looped)
    assert loss == pytest.approx(np.mean(batch_losses), rel=1e-15)
    assert accuracy == n_correct / len(y)


def transcribed_sgd(X, y, W, b, rates, batch_size, scale, alpha, mu, nesterov, s, epochs):
    """The issue's formulas, transcribed literally, in float64, a batch at a time; ``rates[epoch][batch]``.

    Returns the weights, the velocities and every batch's data loss.
    """
    X = X.astype(np.float64) * scale
    W, b = W.astype(np.float64), b.astype(np.float64)
    VW, vb = np.zeros_like(W), np.zeros_like(b)
    losses = []
    for epoch in range(epochs):
        for t, start in enumerate(range(0, len(y), batch_size)):
            X_B, y_B, s_B = X[start:start + batch_size], y[start:start + batch_size], s[start:start + batch_size]
            Z = X_B @ W + b
            P = np.exp(Z - Z.max(axis=1, keepdims=True))
            P /= P.sum(axis=1, keepdims=True)
            Y = np.eye(W.shape[1])[y_B]
            CE = -np.log(P[np.arange(len(y_B)), y_B])
            losses.append(np.sum(s_B * CE) / len(y_B))
            gW = X_B.T @ (s_B[:, None] * (P - Y)) / len(y_B) + alpha * W
            gb = np.sum(s_B[:, None] * (P - Y), axis=0) / len(y_B)
            VW = mu * VW + gW
            vb = mu * vb + gb
            W = W - rates[epoch][t] * (gW + mu * VW if nesterov else VW)
            b = b - rates[epoch][t] * (gb + mu * vb if nesterov else vb)
    return W, b, VW, vb, losses


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
def test_the_reference_is_the_transcribed_formulas_step_by_step_over_three_epochs(reference, nesterov, input_kind):
    X, y, W, b, scale = make_problem(300, 30, 4, np.float64, input_kind, seed=5)
    s = np.random.default_rng(5).uniform(0, 2, len(y))
    n_batches = -(-len(y) // BATCH_SIZE)
    rates = [np.linspace(0.5, 0.1, n_batches) / (1 + epoch) for epoch in range(OPTION_EPOCHS)]
    expected_W, expected_b, expected_VW, expected_vb, expected_losses = transcribed_sgd(
        X, y, W, b, rates, BATCH_SIZE, scale, 1e-2, 0.9, nesterov, s, OPTION_EPOCHS)
    VW, vb = np.zeros_like(W), np.zeros_like(b)
    losses = []
    for epoch in range(OPTION_EPOCHS):
        for t, start in enumerate(range(0, len(y), BATCH_SIZE)):
            rows = slice(start, start + BATCH_SIZE)
            losses.append(reference.sgd_step(X[rows], y[rows], W, b, rates[epoch][t], scale, alpha=1e-2, momentum=0.9,
                                             nesterov=nesterov, velocity=(VW, vb), sample_weight=s[rows])[0])
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-12)
    for got, want in ((W, expected_W), (b, expected_b), (VW, expected_VW), (vb, expected_vb)):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)


def test_no_penalty_no_momentum_and_unit_weights_are_plain_sgd_bit_for_bit(backend, dtype, input_kind):
    X, y, W, b, scale = make_problem(300, 60, 10, dtype, input_kind, seed=6)
    W_plain, b_plain = copies(W, b)
    plain = backend.train_epoch(X, y, W_plain, b_plain, 0.2, BATCH_SIZE, scale)
    explicit = backend.train_epoch(X, y, W, b, np.full(3, 0.2), BATCH_SIZE, scale, alpha=0.0, momentum=0.0,
                                   sample_weight=np.ones(len(y)))
    assert explicit == plain
    np.testing.assert_array_equal(W, W_plain)
    np.testing.assert_array_equal(b, b_plain)


def test_a_weight_of_c_on_every_row_is_a_rate_c_times_larger(backend, dtype, input_kind):
    X, y, W, b, scale = make_problem(300, 60, 10, dtype, input_kind, seed=7)
    W_rate, b_rate = copies(W, b)
    weighted = backend.train_epoch(X, y, W, b, 0.1, BATCH_SIZE, scale, sample_weight=np.full(len(y), 3.0))
    faster = backend.train_epoch(X, y, W_rate, b_rate, 0.3, BATCH_SIZE, scale)
    assert_close(weighted[0], 3 * faster[0], dtype)
    assert_close(W, W_rate, dtype)
    assert_close(b, b_rate, dtype)


@pytest.mark.parametrize("shape_name", SHAPES)
def test_predict_proba_and_predict(compiled_backend, reference, shape_name, dtype, input_kind):
    X, _, W, b, scale = problem(shape_name, dtype, input_kind)
    P = compiled_backend.predict_proba(X, W, b, scale)
    assert P.dtype == W.dtype
    assert_close(P, reference.predict_proba(X, W, b, scale), dtype)
    labels = compiled_backend.predict(X, W, b, scale)
    assert labels.dtype == np.intp
    np.testing.assert_array_equal(labels, reference.predict(X, W, b, scale))


# Known answers, written down without the reference: every backend, the reference included, must give them.
# k = 3 takes the compiled kernels' narrow loops, k = 40 their GEMM loops and rows of more than one vector.
KNOWN_CLASS_COUNTS = [3, 40]


@pytest.mark.parametrize("k", KNOWN_CLASS_COUNTS)
def test_equal_logits_give_a_uniform_softmax_and_a_loss_of_log_k(backend, dtype, k):
    # Each row holds one value, a different one per row: softmax 1/k, cross-entropy log k whatever the label.
    Z = np.repeat(np.array([[-7.5], [0.0], [3.25], [100.0]], dtype=dtype), k, axis=1)
    y = np.array([0, k - 1, 1, k // 2])
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(backend.softmax(Z), 1 / k, rtol=4 * eps)
    # A row's loss is 100 + log k - 100 in the row's dtype: rounded at the magnitude of 100 + log k (< 128).
    assert backend.cross_entropy(Z, y) == pytest.approx(np.log(k), abs=128 * eps)


def test_a_row_of_logits_0_and_log_3_gives_a_quarter_and_three_quarters(backend, dtype):
    Z = np.array([[0.0, np.log(3.0)], [np.log(3.0), 0.0]], dtype=dtype)
    np.testing.assert_allclose(backend.softmax(Z), [[0.25, 0.75], [0.75, 0.25]], rtol=4 * np.finfo(dtype).eps)
    # Row 1's label has probability 1/4 and row 2's 3/4: a mean loss of (log 4 + log 4/3) / 2.
    expected = (np.log(4.0) + np.log(4.0 / 3.0)) / 2
    assert backend.cross_entropy(Z, np.array([0, 0])) == pytest.approx(expected, rel=8 * float(np.finfo(dtype).eps))


@pytest.mark.parametrize("k", KNOWN_CLASS_COUNTS)
def test_zero_weights_give_the_gradient_of_a_uniform_prediction(backend, dtype, input_kind, k):
    # With W = 0 and b = 0 every row predicts 1/k for each class: the loss is log k, the logits' gradient
    # (1/k - [c == y]) / n, so dW[j, c] = sum_i x_ij (1/k - [c == y_i]) / n and db[c] = 1/k - (rows of class c) / n.
    X, y, W, b, scale = make_problem(200, 30, k, dtype, input_kind, logits="ties")
    n = len(y)
    features = X.astype(np.float64) * scale
    onehot = y[:, None] == np.arange(k)
    expected_dW = features.T @ (1 / k - onehot) / n
    expected_db = 1 / k - np.bincount(y, minlength=k) / n
    loss, dW, db = backend.loss_and_grad(X, y, W, b, scale)
    assert loss == pytest.approx(np.log(k), rel=1e-6 if dtype == np.float32 else 1e-14)
    assert_close(dW, expected_dW, dtype)
    assert_close(db, expected_db, dtype)
    # One step of lr moves the weights from 0 to -lr times that gradient; every row's prediction was class 0.
    loss, n_correct = backend.sgd_step(X, y, W, b, 0.5, scale)
    assert n_correct == np.count_nonzero(y == 0)
    assert_close(W, -0.5 * expected_dW, dtype)
    assert_close(b, -0.5 * expected_db, dtype)


@pytest.mark.parametrize("k", KNOWN_CLASS_COUNTS)
def test_zero_weights_predict_every_class_with_probability_1_over_k(backend, dtype, input_kind, k):
    X, _, W, b, scale = make_problem(50, 30, k, dtype, input_kind, logits="ties")
    np.testing.assert_allclose(backend.predict_proba(X, W, b, scale), 1 / k, rtol=4 * np.finfo(dtype).eps)
    np.testing.assert_array_equal(backend.predict(X, W, b, scale), 0)


def test_ties_go_to_the_lowest_class(backend, dtype):
    X, _, W, b, scale = problem("ties", dtype, "float")
    np.testing.assert_array_equal(backend.predict(X, W, b, scale), 0)


@pytest.mark.parametrize("n_classes", [5, 40])  # a value at a time, and vectors along the row with a short last one
def test_a_row_with_nan_or_no_finite_largest_logit_gives_nan(backend, dtype, n_classes):
    Z = np.zeros((4, n_classes), dtype=dtype)
    Z[0, 3] = np.nan
    Z[1, :] = -np.inf
    Z[2, 1] = np.inf
    Z[3, 0] = np.nan
    with np.errstate(invalid="ignore"):  # the reference's inf - inf
        P = backend.softmax(Z)
        assert np.isnan(P).all()
        assert np.isnan(backend.cross_entropy(Z, np.zeros(4, dtype=np.intp)))
