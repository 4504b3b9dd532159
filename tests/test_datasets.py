"""Tests of clusterkit.datasets. No network: every download attempt is intercepted."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pooch
import pytest

from clusterkit import datasets as D

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real data files not found at {DATA} (../shared/data)")

MNIST_COUNTS = [6903, 7877, 6990, 7141, 6824, 6313, 6876, 7293, 6825, 6958]  # train + test
USPS_COUNTS = [1553, 1269, 929, 824, 852, 716, 834, 792, 708, 821]
DIGITS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


class Downloads:
    """Stands in for pooch.retrieve: records each call, then fails (or runs ``action``)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.action = None
        self.expected = False  # set by tests that mean to trigger a download

    def __call__(self, url, known_hash=None, fname=None, path=None, **kw):
        self.calls.append(dict(url=url, known_hash=known_hash, fname=fname, path=Path(path), **kw))
        if self.action is None:
            raise ConnectionError(f"test tried to download {url}")
        return self.action(url, known_hash, fname, Path(path))


def _offline(mp: pytest.MonkeyPatch, cache: Path) -> Downloads:
    downloads = Downloads()
    mp.setattr(pooch, "retrieve", downloads)
    mp.setattr(D, "_cache_dir", lambda: cache)
    mp.delenv(D.ENV_VAR, raising=False)
    return downloads


@pytest.fixture(autouse=True)
def downloads(monkeypatch, tmp_path):
    """Hermetic: empty cache, no CLUSTERKIT_DATA, downloads recorded and refused."""
    cache = tmp_path / "cache"
    cache.mkdir()
    d = _offline(monkeypatch, cache)
    yield d
    unexpected = [] if d.expected else [c["url"] for c in d.calls]
    assert not unexpected, f"unexpected download attempts: {unexpected}"


def _real(name: str, tmp_path_factory) -> D.Dataset:
    if not DATA.is_dir():
        pytest.skip(f"real data files not found at {DATA} (../shared/data)")
    with pytest.MonkeyPatch.context() as mp:
        downloads = _offline(mp, tmp_path_factory.mktemp("cache"))
        mp.setenv(D.ENV_VAR, str(DATA))
        ds = D.load(name, download=False)
        assert not downloads.calls
    return ds


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    return _real("mnist", tmp_path_factory)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    return _real("fashion-mnist", tmp_path_factory)


@pytest.fixture(scope="module")
def usps(tmp_path_factory):
    return _real("usps", tmp_path_factory)


def _check_images(ds: D.Dataset, n: int, shape: tuple, counts) -> None:
    assert ds.X.shape == (n, *shape) and ds.image_shape == shape
    assert ds.X.dtype == np.float32 and ds.y.dtype == np.int64 and ds.y.shape == (n,)
    assert ds.X.min() == 0.0 and ds.X.max() == 1.0
    assert ds.n_clusters == 10 and len(ds) == n
    assert np.bincount(ds.y, minlength=10).tolist() == list(counts)


def _aligned_accuracy(ds: D.Dataset) -> float:
    """Nearest-class-mean accuracy, means from 10000 train rows, scored on 2000 test rows.
    Near chance (0.1) if images and labels were paired or ordered wrongly."""
    X, y = ds.flat(), ds.y
    means = np.stack([X[:10000][y[:10000] == k].mean(0) for k in range(10)])
    Xt, yt = X[60000:62000], y[60000:62000]
    d = (Xt**2).sum(1)[:, None] - 2 * Xt @ means.T + (means**2).sum(1)
    return float((d.argmin(1) == yt).mean())


# --------------------------------------------------------------------------- basics


def test_names_and_unknown_name():
    assert D.names() == ["digits", "mnist-5k", "mnist", "fashion-mnist", "usps", "reuters-10k"]
    with pytest.raises(ValueError, match="valid names: digits, mnist-5k, .*reuters-10k"):
        D.load("cifar-10")


def test_digits():
    ds = D.load("digits")
    _check_images(ds, 1797, (1, 8, 8), DIGITS_COUNTS)
    assert ds.name == "digits"
    # values are k/16 for integers k
    np.testing.assert_array_equal(ds.X * 16, np.round(ds.X * 16))
    flat = ds.flat()
    assert flat.shape == (1797, 64) and flat.dtype == np.float32
    assert np.shares_memory(flat, ds.X)
    assert repr(ds) == "Dataset('digits', n=1797, shape=1x8x8, n_clusters=10)"


def test_mnist_5k():
    ds = D.load("mnist-5k")
    _check_images(ds, 5000, (1, 28, 28), [500] * 10)
    np.testing.assert_array_equal(ds.X * 255, np.round(ds.X * 255))


def test_loads_return_fresh_arrays():
    a = D.load("mnist-5k")
    a.X[:] = -1.0
    a.y[:] = -1
    b = D.load("mnist-5k")
    assert b.X.min() == 0.0 and b.y.min() == 0


def test_dataset_validates():
    with pytest.raises(TypeError, match="float32"):
        D.Dataset(np.zeros((3, 2)), np.zeros(3, np.int64), "x", 2)
    with pytest.raises(ValueError, match="do not match"):
        D.Dataset(np.zeros((3, 2), np.float32), np.zeros(4, np.int64), "x", 2)
    with pytest.raises(ValueError, match="image_shape"):
        D.Dataset(np.zeros((3, 1, 4, 4), np.float32), np.zeros(3, np.int64), "x", 2, (1, 2, 8))


# --------------------------------------------------------------------------- subset / split


def test_subset_stratified_and_seeded():
    full = np.bincount(D.load("digits").y)
    a = D.load("digits", subset=200, seed=1)
    assert len(a) == 200 and a.X.shape == (200, 1, 8, 8) and a.n_clusters == 10
    counts = np.bincount(a.y, minlength=10)
    assert counts.sum() == 200
    assert np.all(np.abs(counts - full * 200 / full.sum()) < 1)  # proportional, rounded
    b = D.load("digits", subset=200, seed=1)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    c = D.load("digits", subset=200, seed=2)
    assert not np.array_equal(a.X, c.X)


def test_subset_every_class_kept_when_imbalanced():
    y = np.repeat(np.arange(3), [97, 2, 1]).astype(np.int64)
    ds = D.Dataset(np.arange(100, dtype=np.float32)[:, None], y, "toy", 3)
    sub = ds.subset(3, seed=0)
    assert sorted(sub.y.tolist()) == [0, 1, 2]
    assert np.all(np.diff(sub.X[:, 0]) > 0)  # original order kept, no repeats


@pytest.mark.parametrize("m", [0, 9, 1798])
def test_subset_bad_sizes(m):
    with pytest.raises(ValueError, match=r"\[10, 1797\]"):
        D.load("digits", subset=m)


def test_subset_of_all_points_is_everything():
    full, sub = D.load("digits"), D.load("digits", subset=1797, seed=5)
    np.testing.assert_array_equal(full.X, sub.X)


def test_split_disjoint_stratified_seeded():
    y = np.repeat(np.arange(4), [400, 300, 200, 100]).astype(np.int64)
    ids = np.arange(1000, dtype=np.float32)
    ds = D.Dataset(ids[:, None], y, "toy", 4)
    train, test = ds.split(0.1, seed=3)
    assert (len(train), len(test)) == (900, 100)
    assert np.bincount(test.y).tolist() == [40, 30, 20, 10]
    assert np.bincount(train.y).tolist() == [360, 270, 180, 90]
    tr, te = set(train.X[:, 0].tolist()), set(test.X[:, 0].tolist())
    assert not tr & te and len(tr | te) == 1000
    np.testing.assert_array_equal(test.y, y[test.X[:, 0].astype(int)])  # rows keep labels
    again = ds.split(0.1, seed=3)[1]
    np.testing.assert_array_equal(test.X, again.X)
    assert not np.array_equal(test.X, ds.split(0.1, seed=4)[1].X)


def _rows(ds: D.Dataset) -> list[bytes]:
    """The (pixels, label) rows of ``ds`` as a sorted multiset."""
    return sorted(map(bytes, np.c_[ds.flat(), ds.y].astype(np.float32)))


def test_split_digits_is_a_partition():
    ds = D.load("digits")
    train, test = ds.split(0.1, seed=0)
    assert (len(train), len(test)) == (1617, 180)
    assert np.all(np.abs(np.bincount(test.y) - np.array(DIGITS_COUNTS) * 0.1) < 1)
    assert _rows(ds) == sorted(_rows(train) + _rows(test))


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1e-5])
def test_split_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        D.load("digits").split(fraction)


# --------------------------------------------------------------------------- real files


@needs_data
def test_mnist(mnist):
    _check_images(mnist, 70000, (1, 28, 28), MNIST_COUNTS)
    assert mnist.y[0] == 5 and mnist.y[60000] == 7  # first train / first test label: train first
    assert mnist.name == "mnist"
    assert _aligned_accuracy(mnist) > 0.7


@needs_data
def test_fashion_mnist(fashion):
    _check_images(fashion, 70000, (1, 28, 28), [7000] * 10)
    assert fashion.y[0] == 9 and fashion.y[60000] == 9
    assert _aligned_accuracy(fashion) > 0.6
    assert not np.array_equal(fashion.X[:100], D.load("mnist-5k").X[:100])


@needs_data
def test_usps(usps):
    _check_images(usps, 9298, (1, 16, 16), USPS_COUNTS)


@needs_data
def test_usps_jf_pair_equals_h5(usps, tmp_path):
    (tmp_path / "usps").mkdir()
    for f in ("usps_train.jf.gz", "usps_test.jf.gz"):
        shutil.copy(DATA / "usps" / f, tmp_path / "usps" / f)
    jf = D.load("usps", root=tmp_path, download=False)
    assert jf.X.shape == usps.X.shape and jf.X.dtype == np.float32
    np.testing.assert_array_equal(jf.y, usps.y)
    np.testing.assert_allclose(jf.X, usps.X, atol=1e-6)


@needs_data
def test_real_files_found_via_root(mnist, tmp_path):
    ds = D.load("mnist", root=DATA, download=False)  # env unset, cache empty
    np.testing.assert_array_equal(ds.y, mnist.y)


@needs_data
def test_hash_checked_once_per_file_version(monkeypatch, tmp_path):
    path = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    path.parent.mkdir()
    shutil.copy(DATA / "mnist" / path.name, path)
    calls = []
    real = D._sha256
    monkeypatch.setattr(D, "_sha256", lambda p: calls.append(p) or real(p))
    key = "mnist/t10k-labels-idx1-ubyte.gz"
    for _ in range(3):
        D._fetch(key, tmp_path, download=False)
    assert len(calls) == 1
    st = path.stat()  # a new mtime: hashed again
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    D._fetch(key, tmp_path, download=False)
    assert len(calls) == 2


@needs_data
def test_corrupt_file_raises_naming_hash(monkeypatch, tmp_path):
    monkeypatch.setenv(D.ENV_VAR, str(DATA))  # the other three files are fine
    bad = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    bad.parent.mkdir()
    data = bytearray((DATA / "mnist" / bad.name).read_bytes())
    data[100] ^= 0xFF
    bad.write_bytes(bytes(data))
    actual = hashlib.sha256(data).hexdigest()
    with pytest.raises(ValueError, match="hash") as err:
        D.load("mnist", root=tmp_path, download=False)
    msg = str(err.value)
    assert str(bad) in msg and actual in msg and D._FILES["mnist/" + bad.name].sha256 in msg
    assert "delete" in msg


# --------------------------------------------------------------------------- missing files


def test_locate_order(monkeypatch, tmp_path):
    key = "reuters/reuters10k.mat"
    dirs = {k: tmp_path / k for k in ("root", "env", "cache")}
    for d in dirs.values():
        (d / "reuters").mkdir(parents=True)
        (d / key).write_bytes(b"x")
    monkeypatch.setattr(D, "_cache_dir", lambda: dirs["cache"])
    monkeypatch.setenv(D.ENV_VAR, str(dirs["env"]))
    assert D._locate(key, dirs["root"]) == dirs["root"] / key
    assert D._locate(key, None) == dirs["env"] / key
    monkeypatch.delenv(D.ENV_VAR)
    assert D._locate(key, None) == dirs["cache"] / key
    (dirs["cache"] / key).unlink()
    assert D._locate(key, None) is None


def test_missing_file_without_download(monkeypatch, tmp_path, downloads):
    empty = tmp_path / "empty_env"
    empty.mkdir()
    monkeypatch.setenv(D.ENV_VAR, str(empty))
    root = tmp_path / "root"
    with pytest.raises(RuntimeError) as err:
        D.load("mnist", root=root, download=False)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" in msg
    assert str(root / "mnist") in msg and "CLUSTERKIT_DATA" in msg
    assert not downloads.calls


def test_usps_missing_names_jf_download(tmp_path):
    with pytest.raises(RuntimeError, match=r"usps_train\.jf\.gz.*rwth-aachen"):
        D.load("usps", root=tmp_path, download=False)


def test_failed_download_raises_runtime_error(tmp_path, downloads):
    downloads.expected = True
    with pytest.raises(RuntimeError, match="download failed") as err:
        D.load("fashion-mnist", root=tmp_path)
    msg = str(err.value)
    url = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz"
    assert url in msg and "CLUSTERKIT_DATA" in msg
    (call,) = downloads.calls
    assert call["url"] == url and call["fname"] == "train-images-idx3-ubyte.gz"
    assert call["known_hash"] == "sha256:" + D._FILES[
        "fashion_mnist/train-images-idx3-ubyte.gz"].sha256
    assert call["path"] == D._cache_dir() / "fashion_mnist" and call["progressbar"] is True


# --------------------------------------------------------------------------- reuters-10k


def _write_reuters(path: Path, n: int = 40, d: int = 2000, seed: int = 0):
    import scipy.io

    rng = np.random.default_rng(seed)
    X = rng.random((n, d)) * (rng.random((n, d)) < 0.01)  # sparse-ish tf-idf, float64
    Y = (np.arange(n) % 4).reshape(n, 1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": X, "Y": Y})
    return X, Y.ravel(), hashlib.sha256(path.read_bytes()).hexdigest()


def _override_hash(monkeypatch, sha: str) -> None:
    key = "reuters/reuters10k.mat"
    monkeypatch.setitem(D._FILES, key, D._FILES[key]._replace(sha256=sha))


def test_reuters_from_small_mat(monkeypatch, tmp_path):
    X, y, sha = _write_reuters(tmp_path / "reuters" / "reuters10k.mat")
    with pytest.raises(ValueError, match="hash"):  # the real hash does not fit the toy file
        D.load("reuters-10k", root=tmp_path, download=False)
    _override_hash(monkeypatch, sha)
    ds = D.load("reuters-10k", root=tmp_path, download=False)
    assert ds.X.shape == (40, 2000) and ds.X.dtype == np.float32 and ds.image_shape is None
    assert ds.y.dtype == np.int64 and ds.y.tolist() == y.tolist()
    assert ds.n_clusters == 4 and ds.name == "reuters-10k"
    np.testing.assert_allclose(ds.X, X, rtol=1e-6)
    assert ds.flat().shape == (40, 2000) and np.shares_memory(ds.flat(), ds.X)
    assert np.bincount(ds.subset(8, seed=0).y).tolist() == [2, 2, 2, 2]


def test_reuters_download_goes_to_cache(monkeypatch, tmp_path, downloads):
    src = tmp_path / "src" / "reuters10k.mat"
    _, y, sha = _write_reuters(src)
    _override_hash(monkeypatch, sha)

    def fake_retrieve(url, known_hash, fname, path):
        path.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, path / fname)
        return str(path / fname)

    downloads.expected, downloads.action = True, fake_retrieve
    ds = D.load("reuters-10k")
    assert ds.y.tolist() == y.tolist()
    (call,) = downloads.calls
    assert call["url"] == "https://github.com/slim1017/VaDE/raw/master/dataset/reuters10k.mat"
    assert call["known_hash"] == f"sha256:{sha}"
    assert (D._cache_dir() / "reuters" / "reuters10k.mat").is_file()
    D.load("reuters-10k")  # now found in the cache: no second download
    assert len(downloads.calls) == 1
