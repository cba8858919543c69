"""Data loading (npz files, bundled demo data, text tasks)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time they are imported on first use
    from .npz import load_npz  # noqa: F401
    from .text import TEXT_TASKS, TextSplit, TextTask, glove_matrix, load_glove, load_mr, load_sst2, load_text_task, load_toxic, load_urls, split_indices  # noqa: F401
    from .text_encoding import EncodedText, Tokenizer, Vocabulary, encode_texts, pad_ids, word_frames  # noqa: F401

#: where each public name lives (imported on first access: `certnn --help` does not import torch)
_EXPORTS = {
    "load_npz": ".npz", "TEXT_TASKS": ".tasks", "EncodedText": ".text_encoding", "TextSplit": ".text", "TextTask": ".text",
    "Tokenizer": ".text_encoding", "Vocabulary": ".text_encoding", "encode_texts": ".text_encoding", "glove_matrix": ".text",
    "load_glove": ".text", "load_mr": ".text", "load_sst2": ".text", "load_text_task": ".text",
    "load_toxic": ".text", "load_urls": ".text", "pad_ids": ".text_encoding", "split_indices": ".text",
    "word_frames": ".text_encoding",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
