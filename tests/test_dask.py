"""softmax_fast.dask.SoftmaxRegression on a LocalCluster of 2 worker processes on 127.0.0.1, against the in-memory
estimator: SGD bitwise, L-BFGS to 1e-9, prediction, validation, and faults (a worker killed, a client's Ctrl-C).

Every test starts its own cluster and closes it at its end.
"""

import contextlib
import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest

from softmax_fast import SoftmaxRegression, kernels
from softmax_fast.estimator import TrainingDivergedError

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
sfdask = pytest.importorskip("softmax_fast.dask")

N_ROWS, N_FEATURES, N_CLASSES = 12_288, 20, 5
#: Rows per Dask block: BATCHES_PER_CALL (32) batches of the default 128, so that the blocks' batches are the
#: in-memory fit's, and so are its kernel calls, whose mean losses the epoch's train_loss sums. (Blocks of any
#: multiple of 128 rows give the same weights; the calls, and so train_loss's last bits, may differ.)
CHUNK = 4096
#: The clusters' Dask settings. A worker that needs a block from a worker just killed retries the connection
#: until this timeout (30 s by default), which stalled a fault test by 30 s in about one run in five; on
#: 127.0.0.1 a live worker answers at once.
CLUSTER_CONFIG = {"distributed.comm.timeouts.connect": "5s"}


@contextlib.contextmanager
def local_client(**config):
    """A client of a new LocalCluster: 2 worker processes of 1 thread, on 127.0.0.1 only, with ``CLUSTER_CONFIG``
    and the Dask settings ``config``; closed on leaving."""
    with dask.config.set({**CLUSTER_CONFIG, **config}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture
def client():
    """A client of a new :func:`local_client`, closed after the test."""
    with local_client() as client:
        yield client


def problem(dtype=np.float32, seed=0):
    """Separable-ish rows ``(X (N_ROWS, N_FEATURES), y)``: class means plus noise, ``dtype`` (uint8: pixels)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, N_ROWS)
    X = rng.standard_normal((N_CLASSES, N_FEATURES))[y] + rng.standard_normal((N_ROWS, N_FEATURES))
    if dtype == np.uint8:
        return np.clip(X * 40 + 128, 0, 255).astype(np.uint8), y
    return X.astype(dtype), y


def on_cluster(*arrays, chunks=CHUNK):
    """The arrays as Dask arrays chunked by rows."""
    return [None if a is None else da.from_array(a, chunks=(chunks,) + a.shape[1:]) for a in arrays]


def without_seconds(history):
    return [{key: value for key, value in record.items() if key != "seconds"} for record in history]


def assert_same_fit(dask_model, local_model):
    np.testing.assert_array_equal(dask_model.coef_, local_model.coef_)
    np.testing.assert_array_equal(dask_model.intercept_, local_model.intercept_)
    assert dask_model.n_steps_ == local_model.n_steps_ and dask_model.n_iter_ == local_model.n_iter_
    assert without_seconds(dask_model.history_) == without_seconds(local_model.history_)


SGD_CASES = {
    "seed recipe, float32 features": ({}, np.float32, False),
    "uint8 pixels": ({}, np.uint8, False),
    "issue 9's options, float64": (dict(dtype="float64", alpha=1e-3, momentum=0.9, nesterov=True,
                                        learning_rate="cosine", class_weight="balanced"), np.float64, True),
    "adaptive rate": (dict(learning_rate="adaptive", n_iter_no_change=1, tol=10.0), np.float32, False),
}


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_sgd_on_blocks_of_whole_batches_is_the_in_memory_fit_bitwise(client, backend):
    for name, (params, X_dtype, weighted) in SGD_CASES.items():
        X, y = problem(X_dtype)
        sample_weight = np.random.default_rng(1).uniform(0, 2, N_ROWS) if weighted else None
        params = dict(params, epochs=3, backend=backend)
        local = SoftmaxRegression(**params).fit(X, y, sample_weight, validation_data=(X[:300], y[:300]))
        model = sfdask.SoftmaxRegression(**params).fit(*on_cluster(X, y, sample_weight),
                                                        validation_data=(X[:300], y[:300]))
        assert_same_fit(model, local), name


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_shuffle_visits_the_blocks_as_a_block_shuffle_of_the_chunk_size(client, backend):
    X, y = problem()
    model = sfdask.SoftmaxRegression(epochs=3, shuffle=True, random_state=7, backend=backend)
    model.fit(*on_cluster(X, y))
    local = SoftmaxRegression(epochs=3, shuffle=True, shuffle_block_size=CHUNK, random_state=7, backend=backend)
    assert_same_fit(model, local.fit(X, y))


def test_blocks_of_any_length_train_every_row_in_batches_within_blocks(client):
    # Blocks of 1000 rows (7 full batches and one of 104) and one of 288: an epoch is 99 batches, not 96, those of
    # each block trained in memory, one block after the other.
    X, y = problem()
    model = sfdask.SoftmaxRegression(epochs=2).fit(*on_cluster(X, y, chunks=1000))
    assert model.n_steps_ == 2 * (12 * 8 + 3)
    local = SoftmaxRegression(epochs=1)
    local.partial_fit(X[:1000], y[:1000], classes=np.arange(N_CLASSES))
    for start in range(1000, N_ROWS, 1000):
        local.partial_fit(X[start:start + 1000], y[start:start + 1000])
    first_epoch = sfdask.SoftmaxRegression(epochs=1).fit(*on_cluster(X, y, chunks=1000))
    np.testing.assert_array_equal(first_epoch.coef_, local.coef_)


def test_warm_start_goes_on_like_the_in_memory_fit(client):
    X, y = problem()
    model = sfdask.SoftmaxRegression(epochs=2, momentum=0.5, warm_start=True)
    local = SoftmaxRegression(epochs=2, momentum=0.5, warm_start=True)
    for _ in range(2):
        model.fit(*on_cluster(X, y))
        local.fit(X, y)
    assert_same_fit(model, local)


@pytest.mark.parametrize("backend, chunks", [("numpy", CHUNK), ("numba", (700, 5300, 96, 6192)),
                                            ("cython", (5000, 128, 7160))])
def test_lbfgs_reaches_the_in_memory_objective_to_1e_9(client, backend, chunks):
    X, y = problem(np.float64)
    sample_weight = np.random.default_rng(2).uniform(0.5, 1.5, N_ROWS)
    params = dict(solver="lbfgs", alpha=1e-3, dtype="float64", gtol=1e-6, backend=backend)
    local = SoftmaxRegression(**params).fit(X, y, sample_weight)
    X_blocks, y_blocks, weight_blocks = (da.from_array(a, chunks=(chunks,) + a.shape[1:])
                                         for a in (X, y, sample_weight))
    model = sfdask.SoftmaxRegression(**params).fit(X_blocks, y_blocks, weight_blocks)
    assert model.history_[-1]["gradient_norm"] <= 1e-6
    assert model.history_[-1]["objective"] == pytest.approx(local.history_[-1]["objective"], rel=1e-9)
    np.testing.assert_allclose(model.coef_, local.coef_, atol=1e-6)
    again = sfdask.SoftmaxRegression(**params).fit(X_blocks, y_blocks, weight_blocks)
    assert without_seconds(again.history_) == without_seconds(model.history_)  # a fixed reduction order
    np.testing.assert_array_equal(again.coef_, model.coef_)


def test_lbfgs_in_float32_on_uint8_pixels_reaches_the_in_memory_objective_to_its_rounding(client):
    # A float32 fit ends where its objective, rounded to float32, stops decreasing; the blocks' gradients are
    # rounded apart, so the two fits agree to float32's precision, not to 1e-9.
    X, y = problem(np.uint8)
    params = dict(solver="lbfgs", alpha=1e-3, gtol=1e-6)
    local = SoftmaxRegression(**params).fit(X, y)
    model = sfdask.SoftmaxRegression(**params).fit(*on_cluster(X, y))
    assert model.coef_.dtype == np.float32
    assert model.history_[-1]["objective"] == pytest.approx(local.history_[-1]["objective"], rel=1e-6)


def test_predictions_are_dask_arrays_computed_blockwise_by_the_local_model(client):
    X, y = problem()
    sample_weight = np.random.default_rng(3).uniform(0, 1, N_ROWS)
    X_blocks, y_blocks, weight_blocks = on_cluster(X, y, sample_weight)
    labels = np.array(["cat", "cow", "dog", "emu", "fox"])[y]
    model = sfdask.SoftmaxRegression(epochs=2).fit(X_blocks, da.from_array(labels, chunks=CHUNK))
    local = model.to_local()
    assert type(local) is SoftmaxRegression and local.classes_.tolist() == ["cat", "cow", "dog", "emu", "fox"]
    probabilities, predicted = model.predict_proba(X_blocks), model.predict(X_blocks)
    assert isinstance(probabilities, da.Array) and probabilities.chunks == ((CHUNK,) * 3, (N_CLASSES,))
    assert isinstance(predicted, da.Array) and predicted.chunks == ((CHUNK,) * 3,)
    np.testing.assert_array_equal(probabilities.compute(), local.predict_proba(X))
    np.testing.assert_array_equal(predicted.compute(), local.predict(X))
    assert model.score(X_blocks, labels) == local.score(X, labels)
    assert model.score(X_blocks, labels, weight_blocks) == pytest.approx(local.score(X, labels, sample_weight),
                                                                          rel=1e-12)


def test_divergence_raises_as_in_memory_and_keeps_the_last_finite_weights(client):
    X, y = problem()
    X = X * 1e30
    model = sfdask.SoftmaxRegression(epochs=2, lr=1e10)
    with pytest.raises(TrainingDivergedError, match="training diverged in epoch 1") as raised:
        model.fit(*on_cluster(X, y))
    assert raised.value.epoch == 1
    assert np.isfinite(model.coef_).all() and model.n_steps_ == 0 and model.history_ == []


@pytest.mark.parametrize("make, error, message", [
    (lambda X, y: (X.compute(), y), TypeError, "X must be a dask.array.Array chunked by rows"),
    (lambda X, y: (X.rechunk((CHUNK, 10)), y), ValueError, r"chunked by rows only.*X.rechunk\(\{1: -1\}\)"),
    (lambda X, y: (X[X[:, 0] > 0], y), ValueError, r"compute_chunk_sizes\(\)"),
    (lambda X, y: (X, y[:-1]), ValueError, r"y must be 1-D with one value per row of X \(12288\)"),
])
def test_data_in_the_wrong_form_is_rejected_before_the_cluster_is_used(make, error, message):
    X, y = on_cluster(*problem())
    with pytest.raises(error, match=message):
        sfdask.SoftmaxRegression().fit(*make(X, y))


def test_bad_values_are_found_on_the_workers_and_named(client):
    X, y = on_cluster(*problem())
    with pytest.raises(ValueError, match="X holds NaN or infinity in a block of 4096 rows"):
        sfdask.SoftmaxRegression().fit(da.where(X > 2, np.nan, X), y)
    with pytest.raises(ValueError, match="y holds only one class"):
        sfdask.SoftmaxRegression().fit(X, da.zeros_like(y))
    with pytest.raises(ValueError, match="sample_weight"):
        sfdask.SoftmaxRegression().fit(X, y, -da.ones_like(y))


@pytest.mark.parametrize("params, message", [
    (dict(early_stopping=True), "early_stopping is not available on Dask data"),
    (dict(shuffle_block_size=100), "shuffle_block_size must be None"),
    (dict(lr=-1), "lr must be"),
])
def test_unavailable_or_bad_parameters_are_rejected(params, message):
    X, y = on_cluster(*problem())
    with pytest.raises(ValueError, match=message):
        sfdask.SoftmaxRegression(**params).fit(X, y)


def test_without_a_client_fit_says_how_to_make_one():
    X, y = on_cluster(*problem())
    with pytest.raises(ValueError, match=r"create a distributed.Client first"):
        sfdask.SoftmaxRegression().fit(X, y)


def test_an_unfitted_model_raises_not_fitted_error():
    from softmax_fast._sklearn_compat import NotFittedError

    with pytest.raises(NotFittedError, match="This SoftmaxRegression instance is not fitted"):
        sfdask.SoftmaxRegression().to_local()


def test_the_parameters_are_the_in_memory_estimators():
    assert sfdask.SoftmaxRegression().get_params() == SoftmaxRegression().get_params()


# -- faults ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_a_worker_killed_between_epochs_is_replaced_and_its_blocks_recomputed(client, solver):
    X, y = problem(np.float64)
    params = dict(solver=solver, epochs=3, max_iter=4, gtol=0.0, dtype="float64")
    killed = []

    def kill_a_worker(record):
        if not killed:
            holding = sorted({worker for holders in client.who_has().values() for worker in holders})
            address = holding[0]
            os.kill(client.run(os.getpid)[address], signal.SIGKILL)
            killed.append(address)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs's max_iter ConvergenceWarning
        model = sfdask.SoftmaxRegression(**params).fit(*on_cluster(X, y), on_epoch=kill_a_worker)
        assert killed
        assert_same_fit(model, sfdask.SoftmaxRegression(**params).fit(*on_cluster(X, y)))


def source_that_acts_once(marker, act):
    """A block function that calls ``act()`` in the worker process computing it, the first time a worker does
    (``marker``: a file created then), and otherwise returns the block. Never in this process: Dask may call it
    here on an empty block to learn its type."""
    test_process = os.getpid()

    def block(X):
        if os.getpid() != test_process:
            try:  # created by one worker only: two running blocks at once must not both see no marker and act
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return X
            act()
        return X
    return block


def source_that_kills_its_worker_once(marker):
    """A block function that SIGKILLs the worker process computing it, the first time a worker does."""
    return source_that_acts_once(marker, lambda: os.kill(os.getpid(), signal.SIGKILL))


def _share_away():
    raise OSError("the share is away")


def source_that_fails_once(marker):
    """A block function that raises OSError the first time a worker computes it, as a read from a file share that
    is briefly away would."""
    return source_that_acts_once(marker, _share_away)


def test_a_fit_retried_on_the_array_whose_block_failed_computes_the_block_again(client, tmp_path):
    # The retry's graph has the failed fit's keys. Three times: without the wait in _release it got the old
    # error about two times in three.
    X, y = problem()
    X_blocks, y_blocks = on_cluster(X, y)
    for attempt in range(3):
        failing = X_blocks.map_blocks(source_that_fails_once(str(tmp_path / f"failed{attempt}")), dtype=X.dtype)
        with pytest.raises(OSError, match="the share is away"):
            sfdask.SoftmaxRegression(epochs=1).fit(failing, y_blocks)
        assert_same_fit(sfdask.SoftmaxRegression(epochs=1).fit(failing, y_blocks),
                        SoftmaxRegression(epochs=1).fit(X, y))


@pytest.mark.slow
def test_a_worker_dying_inside_a_task_is_survived_when_dask_can_retry(client, tmp_path):
    X, y = problem()
    X_blocks, y_blocks = on_cluster(X, y)
    dying = X_blocks.map_blocks(source_that_kills_its_worker_once(str(tmp_path / "killed")), dtype=X.dtype)
    model = sfdask.SoftmaxRegression(epochs=2).fit(dying, y_blocks)
    assert (tmp_path / "killed").exists()
    assert_same_fit(model, SoftmaxRegression(epochs=2).fit(X, y))


@pytest.mark.slow
def test_a_worker_dying_more_often_than_dask_allows_fails_naming_the_loss(tmp_path):
    X, y = problem()
    with local_client(**{"distributed.scheduler.allowed-failures": 0}) as client:
        X_blocks, y_blocks = on_cluster(X, y)
        dying = X_blocks.map_blocks(source_that_kills_its_worker_once(str(tmp_path / "killed")), dtype=X.dtype)
        with pytest.raises(RuntimeError, match="the Dask fit lost its workers"):
            sfdask.SoftmaxRegression(epochs=2).fit(dying, y_blocks)
        model = sfdask.SoftmaxRegression(epochs=2).fit(*on_cluster(X, y))  # the cluster still trains
        assert_same_fit(model, SoftmaxRegression(epochs=2).fit(X, y))
        assert not any(client.processing().values())


def test_ctrl_c_in_the_client_leaves_the_cluster_usable(client):
    # A real SIGINT to this process while the fit waits for an epoch's tasks (the second epoch's: the first one's
    # record starts the timer), as a Ctrl-C in a terminal sends it.
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20_000, 50)).astype(np.float32), rng.integers(0, 10, 20_000)
    timers = []

    def interrupt_soon(record):
        if not timers:
            timers.append(threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)))
            timers[0].start()

    # Python's own handler, whatever this process had (pytest-xdist's workers ignore SIGINT); epochs enough for
    # a minute, so that a signal that went astray fails the test rather than hangs it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            sfdask.SoftmaxRegression(epochs=500).fit(*on_cluster(X, y, chunks=2048), on_epoch=interrupt_soon)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 30
    while any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(client.processing().values()), "the interrupted fit's tasks still run"
    X, y = problem()
    assert_same_fit(sfdask.SoftmaxRegression(epochs=2).fit(*on_cluster(X, y)),
                    SoftmaxRegression(epochs=2).fit(X, y))
