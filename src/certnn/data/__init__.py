"""Data loading (npz files, bundled demo data)."""
from .npz import load_npz

__all__ = ["load_npz"]
