"""How the kernels are compiled, cached and threaded; calls no other module of the package.

``_kernel`` is ``@njit`` with the package's options: fast-math flags that keep
NaN and inf semantics (``FASTMATH_FLAGS``), no GIL, and an on-disk cache whose
entries are stamped with the source of the whole package (``_PackageCache``).
Importing this module starts Numba's threads (numba/numba#9938);
``_thread_count`` reads their count inside a kernel. It also holds the sizes
that modules of every layer share: ``VECTOR_BYTES`` (the vectors of the
matrix loops, see :mod:`._vectors`), ``FLOAT32_LANES`` and ``NARROW_CLASSES``
(the most classes the narrow loops of :mod:`._narrow` take, and a row length
in :mod:`._rows`).
"""

import functools
import hashlib
import os

import numba
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import njit, types
from numba.core import caching, cgutils
from numba.extending import intrinsic

# A kernel loaded from the cache and called from a user's jitted function
# finds Numba's threads not started, unless something started them, and the
# process aborts with "Symbol not found: allocate_sched" (numba/numba#9938).
# Starting them on import, as set_num_threads does, keeps every kernel
# callable from any @njit code.
numba.set_num_threads(numba.get_num_threads())

# ``fastmath=True`` would include "nnan" and "ninf": LLVM could then assume that
# no value is NaN or inf and delete the checks that catch a diverging run. These
# flags keep NaN and inf semantics and allow the rest: reassociation and
# contraction into FMA let the inner loops vectorise.
FASTMATH_FLAGS = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
# Bytes of the vectors of the matrix loops: a ZMM register where the CPU has
# AVX-512 (LLVM splits wider vectors into several registers: 20 accumulators
# of 64 bytes would not fit AVX2's 16), else a YMM register.
VECTOR_BYTES = 64 if llvm_binding.get_host_cpu_features().get("avx512f", False) else 32
# Lanes of a vector of float32, the most of either dtype: sizes _stack_array's constants.
FLOAT32_LANES = VECTOR_BYTES // 4
# More classes than this: the logits and the weight gradient are GEMMs with
# vectors along the classes of W, in place in its (d, k) layout (the last,
# partial panel of classes is read from a zero-padded copy, see _gemm), so
# that no horizontal sum is needed and every load is a whole vector.
NARROW_CLASSES = 16


# Numba stamps a kernel's cache index with a hash of the file that defines the
# kernel alone (numba.core.caching._SourceFileBackedLocatorMixin, numba 0.68).
# The machine code it caches also holds the helpers that the kernel calls from
# the package's other modules: an edit to one of those would leave it stale,
# and the next process would run the old code. Here every kernel's stamp is a
# hash of all the package's modules, in the same places as Numba's:
# NUMBA_CACHE_DIR if set, else the package's __pycache__, else (a read-only
# install) the user-wide cache directory. Numba has no public hook for this:
# these classes subclass its private caching classes, and _kernel sets the
# dispatcher's private _cache, as Dispatcher.enable_caching does for
# njit(cache=True).
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@functools.cache
def _package_stamp():
    """SHA-256 of the names and contents of the package's ``.py`` files, sorted by name; read once a process."""
    digest = hashlib.sha256()
    for name in sorted(name for name in os.listdir(_PACKAGE_DIR) if name.endswith(".py")):
        with open(os.path.join(_PACKAGE_DIR, name), "rb") as source:
            digest.update(name.encode() + b"\0" + hashlib.sha256(source.read()).digest())
    return digest.digest()


class _PackageStamp:
    """A cache locator whose source stamp is the whole package's, not the defining file's."""

    def get_source_stamp(self):
        return _package_stamp()


class _UserProvidedLocator(_PackageStamp, caching.UserProvidedCacheLocator):
    """``NUMBA_CACHE_DIR``, if it is set."""


class _InTreeLocator(_PackageStamp, caching.InTreeCacheLocator):
    """Else the package's ``__pycache__``, if it can be written."""


class _UserWideLocator(_PackageStamp, caching.UserWideCacheLocator):
    """Else the user-wide cache directory."""


class _CacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [_UserProvidedLocator, _InTreeLocator, _UserWideLocator]


class _PackageCache(caching.FunctionCache):
    """Numba's on-disk cache of a kernel, stamped with the package's source (``_package_stamp``)."""

    _impl_class = _CacheImpl


def _kernel(parallel=False, inline=False):
    """``@njit`` with the package's options, releasing the GIL and cached on disk (``_PackageCache``).

    ``inline`` for helpers called once per row or vector: Numba copies them
    into their callers. A call would take and release a reference to each
    array it is passed, atomic operations that cost as much as the row's
    arithmetic when the call is in a loop.
    """
    def compile_kernel(function):
        dispatcher = njit(cache=False, nogil=True, parallel=parallel, fastmath=set(FASTMATH_FLAGS),
                          inline="always" if inline else "never")(function)
        dispatcher._cache = _PackageCache(function)
        return dispatcher

    return compile_kernel


@intrinsic
def _thread_count(typingctx):
    """``numba.get_num_threads()``, read from the threading layer's own symbol.

    Numba's function reads it through a ctypes pointer, a "dynamic global"
    that keeps the kernel that calls it out of the cache. Numba's parallel
    loops call this symbol with this signature themselves.
    """
    def codegen(context, builder, signature, args):
        return builder.call(cgutils.get_or_insert_function(builder.module, ir.FunctionType(cgutils.intp_t, []),
                                                           "get_num_threads"), [])

    return types.intp(), codegen
