"""Softmax-regression kernels behind one contract, in three backends.

* ``numpy``: :mod:`softmax_fast.kernels.reference`, plain NumPy, the specification;
* ``numba``: :mod:`softmax_fast.kernels.numba_kernels`, ``@njit(parallel=True)``;
* ``cython``: :mod:`softmax_fast.kernels.cython_kernels`, ``nogil`` with OpenMP.

``get_backend(name)`` returns a :class:`Backend`, whose methods check their
arguments once (see :mod:`softmax_fast.kernels._validation`) and then call that
backend's kernels. Shapes: ``X (n, d)``, ``y (n,)`` integer labels in
``[0, k)``, ``W (d, k)``, ``b (k,)``; ``W`` and ``b`` are float32 or float64 and
``X`` has their dtype or is uint8. The effective features are ``X * scale``.
``X`` may also be a scipy.sparse CSR matrix or array (``csr_matrix``,
``csr_array``) of the weights' dtype with int32 or int64 indices, for the
training kernels and the predictions: the backends' CSR kernels take its
three arrays, and a pass costs O(nnz * k).

The compiled backends run on ``n_threads`` threads (default
:func:`get_num_threads`), with results bitwise identical for any thread count.
A count above the CPUs this process may use is lowered to that number: more
threads could not run at once, and a huge count would otherwise ask OpenMP
for more threads than the system can start. Each call allocates its own
scratch and the compiled kernels run without the GIL, so threads of the
caller may run kernels at the same time on separate arrays.
"""

import importlib

from . import _validation as check

BACKENDS = ("numpy", "numba", "cython")
_MODULES = {
    "numpy": "softmax_fast.kernels.reference",
    "numba": "softmax_fast.kernels.numba_kernels",
    "cython": "softmax_fast.kernels.cython_kernels",
}
# "auto" takes the first available of these.
_PREFERENCE = ("cython", "numba", "numpy")

# The CPUs this process may use: the default thread count and the most a kernel is run on.
_CPUS = check.default_num_threads()
_num_threads = _CPUS
_loaded = {}


class BackendUnavailableError(ImportError):
    """A backend exists but cannot be used here (its package is missing or its build failed)."""


def set_num_threads(n_threads):
    """Set the default thread count of the compiled kernels (an integer ``>= 1``)."""
    global _num_threads
    _num_threads = check.check_count("n_threads", n_threads)


def get_num_threads():
    """The default thread count of the compiled kernels: the CPUs this process may use unless set."""
    return _num_threads


def _call_threads(n_threads):
    """The threads a call given ``n_threads`` runs on: :func:`get_num_threads` for None, at most the CPUs."""
    n_threads = _num_threads if n_threads is None else check.check_count("n_threads", n_threads)
    return min(n_threads, _CPUS)


class Backend:
    """The kernels of one backend behind the shared argument checks; see :func:`get_backend`."""

    def __init__(self, name, kernels, thread_arguments):
        #: ``"numpy"``, ``"numba"`` or ``"cython"``.
        self.name = name
        self._kernels = kernels
        self._thread_arguments = thread_arguments

    def __repr__(self):
        return f"<softmax_fast backend {self.name!r}>"

    def _threads(self, n_threads):
        """The extra arguments that run a kernel on ``n_threads`` threads (default: :func:`get_num_threads`)."""
        return self._thread_arguments(_call_threads(n_threads))

    def _on_rows(self, name, X):
        """``(kernel, leading arguments)`` for the checked features ``X``: the kernel ``name`` and ``(X,)``, or for
        a :class:`~softmax_fast.kernels._validation.CSR` the kernel ``name + "_csr"`` and its three arrays."""
        if not isinstance(X, check.CSR):
            return getattr(self._kernels, name), (X,)
        return getattr(self._kernels, name + "_csr"), (X.data, X.indices, X.indptr)

    @staticmethod
    def _model_inputs(X, W, b, scale, *, in_place):
        """Checked ``(X, W, b, scale)``, with ``scale`` of ``W``'s dtype so float32 stays float32."""
        W, b = check.check_weights(W, b, in_place=in_place)
        X = check.check_features(X, W)
        return X, W, b, check.check_positive_in("scale", scale, W.dtype)

    def _batch_inputs(self, X, y, W, b, scale, *, in_place):
        X, W, b, scale = self._model_inputs(X, W, b, scale, in_place=in_place)
        return X, check.check_labels(y, X.shape[0], W.shape[1]), W, b, scale

    def softmax(self, Z, out=None, *, n_threads=None):
        """Row-wise, numerically stable softmax of ``Z (n, k)``.

        Written into ``out`` (same shape and dtype, C-contiguous; may be ``Z``
        itself) or a new array; returns it.
        """
        Z = check.check_logits(Z)
        out = Z.copy() if out is None else check.check_out(out, Z)
        return self._kernels.softmax(Z, out, *self._threads(n_threads))

    def cross_entropy(self, Z, y, *, n_threads=None):
        """Mean over rows of ``logsumexp(Z[i]) - Z[i, y[i]]``, a float (summed in float64)."""
        Z = check.check_logits(Z)
        y = check.check_labels(y, Z.shape[0], Z.shape[1])
        return self._kernels.cross_entropy(Z, y, *self._threads(n_threads))

    def loss_and_grad(self, X, y, W, b, scale=1.0, *, alpha=0.0, sample_weight=None, n_threads=None):
        """The batch's data loss and the gradients of its objective: ``(loss, gW (d, k), gb (k,))``.

        ``loss = (1/n) * sum_i s_i * CE_i`` (the mean cross-entropy when
        ``sample_weight`` is None), ``gW = X.T @ (s * (P - Y)) / n + alpha * W``
        and ``gb = sum_i s_i * (P_i - Y_i) / n`` (see
        :mod:`softmax_fast.kernels.reference`). ``gW`` and ``gb`` are new
        arrays of ``W``'s dtype; nothing is modified.
        """
        X, *inputs = self._loss_and_grad_inputs(X, y, W, b, scale, alpha, sample_weight)
        kernel, rows = self._on_rows("loss_and_grad", X)
        return kernel(*rows, *inputs, *self._threads(n_threads))

    def _loss_and_grad_inputs(self, X, y, W, b, scale, alpha, sample_weight):
        """Checked ``(X, y, W, b, scale, alpha, sample_weight)`` for the ``loss_and_grad`` kernel."""
        X, y, W, b, scale = self._batch_inputs(X, y, W, b, scale, in_place=False)
        alpha = check.check_nonnegative_in("alpha", alpha, W.dtype)
        return X, y, W, b, scale, alpha, check.check_sample_weight(sample_weight, X.shape[0], W.dtype)

    def loss_and_grad_on(self, X, y, W, b, scale=1.0, *, alpha=0.0, sample_weight=None, n_threads=None):
        """:meth:`loss_and_grad` on fixed rows, checked once: returns ``f(W, b) -> (loss, gW, gb)``.

        For solvers that evaluate the same rows at many weights: ``X``, ``y``,
        ``scale``, ``alpha``, ``sample_weight`` and the thread count are checked
        (and ``y`` converted) here, once. ``W`` and ``b`` given here fix the
        shapes and dtype; ``f`` checks that each later pair has them and is
        C-contiguous, but not that it is finite.
        """
        X, y, W, b, scale, alpha, sample_weight = self._loss_and_grad_inputs(X, y, W, b, scale, alpha, sample_weight)
        (kernel, rows), threads, W_shape, dtype = self._on_rows("loss_and_grad", X), self._threads(n_threads), \
            W.shape, W.dtype

        def loss_and_grad(W, b):
            if (W.shape != W_shape or b.shape != W_shape[1:] or W.dtype != dtype or b.dtype != dtype
                    or not (W.flags.c_contiguous and b.flags.c_contiguous)):
                raise ValueError(f"W and b must be C-contiguous {dtype} arrays of shapes {W_shape} and "
                                 f"{W_shape[1:]}, got {W.dtype} {W.shape} and {b.dtype} {b.shape}")
            return kernel(*rows, y, W, b, scale, alpha, sample_weight, *threads)

        return loss_and_grad

    def _step_options(self, X, W, b, alpha, momentum, nesterov, velocity, sample_weight):
        """Checked ``(alpha, momentum, nesterov, VW, vb, sample_weight)`` for the training kernels."""
        alpha = check.check_nonnegative_in("alpha", alpha, W.dtype)
        momentum, nesterov, VW, vb = check.check_momentum(momentum, nesterov, velocity, W, b)
        return alpha, momentum, nesterov, VW, vb, check.check_sample_weight(sample_weight, X.shape[0], W.dtype)

    def sgd_step(self, X, y, W, b, lr, scale=1.0, *, alpha=0.0, momentum=0.0, nesterov=False, velocity=None,
                 sample_weight=None, n_threads=None):
        """Forward pass, loss, gradient and the SGD update of ``W`` and ``b`` on one batch, in place.

        The step is ``W -= lr * gW`` and ``b -= lr * gb`` with the gradients of
        :meth:`loss_and_grad`, or with ``momentum`` PyTorch's momentum step on
        ``velocity = (VW, vb)`` (updated in place; required when ``momentum >
        0``), Nesterov's with ``nesterov``. The penalty and the momentum are
        applied in the pass that updates the weights. Returns ``(loss,
        n_correct)``: the batch's data loss and its number of rows whose argmax
        is their label, both before the update.
        """
        X, y, W, b, scale = self._batch_inputs(X, y, W, b, scale, in_place=True)
        lr = check.check_positive_in("lr", lr, W.dtype)
        options = self._step_options(X, W, b, alpha, momentum, nesterov, velocity, sample_weight)
        kernel, rows = self._on_rows("sgd_step", X)
        return kernel(*rows, y, W, b, lr, scale, *options, *self._threads(n_threads))

    def train_epoch(self, X, y, W, b, lr, batch_size, scale=1.0, *, alpha=0.0, momentum=0.0, nesterov=False,
                    velocity=None, sample_weight=None, n_threads=None):
        """``sgd_step`` on ``X[i:i + batch_size]`` for every batch in order, in place.

        ``lr`` is one rate, or a 1-D array of one rate per batch
        (``ceil(n / batch_size)``). The last batch may be shorter; its
        gradient is divided by its own row count. The options are
        :meth:`sgd_step`'s, ``sample_weight`` for all ``n`` rows. Returns
        ``(mean_loss, accuracy)``: the mean of the batch losses and the
        fraction of rows predicted right before their batch's update.
        """
        X, y, W, b, scale = self._batch_inputs(X, y, W, b, scale, in_place=True)
        batch_size = check.check_count("batch_size", batch_size)
        rates = check.check_rates(lr, -(-X.shape[0] // batch_size), W.dtype)
        options = self._step_options(X, W, b, alpha, momentum, nesterov, velocity, sample_weight)
        kernel, rows = self._on_rows("train_epoch", X)
        return kernel(*rows, y, W, b, rates, batch_size, scale, *options, *self._threads(n_threads))

    def predict_proba(self, X, W, b, scale=1.0, *, n_threads=None):
        """Class probabilities ``softmax(X * scale @ W + b)``, ``(n, k)`` of ``W``'s dtype."""
        X, W, b, scale = self._model_inputs(X, W, b, scale, in_place=False)
        kernel, rows = self._on_rows("predict_proba", X)
        return kernel(*rows, W, b, scale, *self._threads(n_threads))

    def predict(self, X, W, b, scale=1.0, *, n_threads=None):
        """The most probable class of each row, ``(n,)`` ``np.intp``; ties go to the lowest index."""
        X, W, b, scale = self._model_inputs(X, W, b, scale, in_place=False)
        kernel, rows = self._on_rows("predict", X)
        return kernel(*rows, W, b, scale, *self._threads(n_threads))


def _serial(n_threads):
    """The reference runs on one thread and takes no thread count."""
    return ()


def _numba_threads(n_threads):
    """Numba kernels take their thread count from ``numba.set_num_threads`` (per calling thread)."""
    import numba

    # It refuses more than the pool that Numba started with (NUMBA_NUM_THREADS may set it below the CPUs).
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    return ()


def _cython_threads(n_threads):
    """Cython kernels take the thread count as their last argument."""
    return (n_threads,)


_THREAD_ARGUMENTS = {"numpy": _serial, "numba": _numba_threads, "cython": _cython_threads}


def _load(name):
    """Import backend ``name``; returns the :class:`Backend` or the reason it is unavailable (a str)."""
    if name not in _loaded:
        try:
            module = importlib.import_module(_MODULES[name])
        except ImportError as exc:
            _loaded[name] = f"{type(exc).__name__}: {exc}"
        else:
            _loaded[name] = Backend(name, module, _THREAD_ARGUMENTS[name])
    return _loaded[name]


def backend_status():
    """``{name: None if usable else the reason it is not}`` for every backend."""
    return {name: None if isinstance(_load(name), Backend) else _load(name) for name in BACKENDS}


def available_backends():
    """The names of the backends that can be used here, the reference first."""
    return [name for name, reason in backend_status().items() if reason is None]


def get_backend(name="auto"):
    """The :class:`Backend` called ``name`` (``"numpy"``, ``"numba"``, ``"cython"``, or ``"auto"``).

    ``"auto"`` is the first available of cython, numba and numpy. Raises
    ``ValueError`` for an unknown name and :class:`BackendUnavailableError`
    (an ``ImportError``) with the reason when the backend cannot be used here.
    """
    if name == "auto":
        name = next(n for n in _PREFERENCE if isinstance(_load(n), Backend))
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; expected 'auto' or one of {', '.join(BACKENDS)}")
    backend = _load(name)
    if not isinstance(backend, Backend):
        raise BackendUnavailableError(f"the {name!r} backend is unavailable: {backend}")
    return backend
