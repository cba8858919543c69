"""The demo's default data: scikit-learn's bundled 8x8 digits (no download), scaled to [0, 1]."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError


def load_digits_split(n_train: int = 1400, dtype: torch.dtype = torch.float64):
    """(x_train, y_train, x_test, y_test) with x of shape (N, 64) in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataError("the demo data comes from scikit-learn: pip install scikit-learn") from exc
    d = load_digits()
    x = np.asarray(d.data, dtype=np.float64) / 16.0
    y = np.asarray(d.target, dtype=np.int64)
    xt = torch.as_tensor(x).to(dtype)
    yt = torch.as_tensor(y)
    return xt[:n_train], yt[:n_train], xt[n_train:], yt[n_train:]
