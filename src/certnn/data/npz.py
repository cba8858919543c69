"""Reading the `D.npz` data files the CLI takes: `x` (float, (N, ...)) and `y` (int labels, (N,))."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError


def read_npz_arrays(p: Path, names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """The named arrays of the .npz file p (no pickles); DataError naming the file if one is missing or
    the file is not a readable .npz."""
    import zipfile

    if not zipfile.is_zipfile(p):
        raise DataError(f"{p} is not an .npz file (not a zip archive of arrays; save one with numpy.savez)")
    try:
        with np.load(p, allow_pickle=False) as f:
            if not set(names) <= set(f.files):
                want = " and ".join(repr(n) for n in names)
                raise DataError(f"{p} must hold arrays {want}; it has {sorted(f.files)}")
            return tuple(f[n] for n in names)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001
        if "pickle" in str(exc):  # an object array: never unpickled
            raise DataError(f"{p} holds object arrays (pickled Python objects); certnn reads numeric arrays only: "
                            "save x as floats and y as integers") from None
        raise DataError(f"cannot read {p} as an .npz file: {type(exc).__name__}: {exc}") from None


def load_npz(path: str | Path, samples: int | None = None, start: int = 0,
             dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {p} not found")
    if (samples is not None and samples < 1) or start < 0:
        raise DataError(f"samples {samples} / start {start}: need samples >= 1 and start >= 0")
    x, y = read_npz_arrays(p, ("x", "y"))
    if x.ndim < 2:
        raise DataError(f"{p}: 'x' must have shape (N, ...) with one row per sample; got {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"{p}: 'y' must have shape ({x.shape[0]},) to match 'x'; got {y.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        hint = (" (raw pixels 0..255? scale them to the model's input range, e.g. x / 255, and save floats)"
                if x.dtype == np.uint8 else "")
        raise DataError(f"{p}: 'x' must hold floating-point values, got {x.dtype}{hint}")
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
        raise DataError(f"{p}: 'y' must hold integer class labels, got {y.dtype}")
    if not np.isfinite(x).all():
        raise DataError(f"{p}: 'x' contains NaN or infinite values")
    end = x.shape[0] if samples is None else min(x.shape[0], start + samples)
    if start >= x.shape[0]:
        raise DataError(f"{p}: start index {start} beyond the {x.shape[0]} samples")
    xt = torch.as_tensor(np.asarray(x[start:end], dtype=np.float64)).to(dtype)
    yt = torch.as_tensor(np.asarray(y[start:end]).astype(np.int64))
    return xt, yt
