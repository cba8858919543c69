"""Texts to fixed-length token ids: tokenisation, vocabularies, truncation and padding, word frames.

Certification needs a fixed sequence length T, so every text becomes exactly T tokens: truncation keeps the
*first* T tokens; padding is on the *left* by default, so word k (0-based) of a text of L kept tokens sits
at frame ``T - L + k`` (:func:`word_frames`). The vocabulary has ``<pad>`` at index 0 and ``<unk>`` at 1.
The tasks and GloVe embeddings that use them: :mod:`certnn.data.text`.
"""
from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..config import Config
from ..errors import ConfigError, DataError

__all__ = ["PAD", "UNK", "Tokenizer", "Vocabulary", "EncodedText", "pad_ids", "encode_texts", "word_frames"]

PAD = "<pad>"
UNK = "<unk>"


# ---------------------------------------------------------------------------------------------------
# Tokenisation

#: words (letters / digits), the Penn-Treebank clitics GloVe 6B uses ("do n't", "it 's"), and single
#: punctuation marks; hyphens and underscores separate words and are dropped
_WORD_RE = re.compile(r"[^\W_]+(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m|t)\b|[^\W_]+|[^\w\s-]")


@dataclass(frozen=True)
class Tokenizer(Config):
    """Text -> tokens. ``level="word"``: lower-cased (by default) regex word split (see ``_WORD_RE``);
    ``level="char"``: one token per character (URLs)."""

    level: str = "word"
    lowercase: bool = True

    choices: ClassVar[dict[str, tuple]] = {"level": ("word", "char")}

    def __call__(self, text: str) -> list[str]:
        s = text.lower() if self.lowercase else text
        if self.level == "char":
            return list(s)
        return _WORD_RE.findall(s)

    def batch(self, texts: Iterable[str]) -> list[list[str]]:
        return [self(t) for t in texts]


# ---------------------------------------------------------------------------------------------------
# Vocabulary


class Vocabulary:
    """Token <-> index. Index 0 is ``<pad>``, 1 is ``<unk>`` (every unknown token maps to it)."""

    pad_index: ClassVar[int] = 0
    unk_index: ClassVar[int] = 1

    def __init__(self, tokens: Sequence[str]):
        toks = tuple(tokens)
        if len(toks) < 2 or toks[0] != PAD or toks[1] != UNK:
            raise DataError(f"a vocabulary must start with {PAD!r}, {UNK!r}; got {list(toks[:2])}")
        if not all(isinstance(t, str) for t in toks):
            raise DataError("vocabulary entries must be strings")
        index = {t: i for i, t in enumerate(toks)}
        if len(index) != len(toks):
            dup = [t for t, c in Counter(toks).items() if c > 1][:5]
            raise DataError(f"vocabulary has repeated entries, e.g. {dup}")
        self._tokens = toks
        self._index = index

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_count: int = 1,
              max_size: int | None = None) -> Vocabulary:
        """From tokenised training texts: tokens seen at least ``min_count`` times, most frequent first
        (ties alphabetically), at most ``max_size`` entries in all (``<pad>``, ``<unk>`` included)."""
        if min_count < 1:
            raise ConfigError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < 2:
            raise ConfigError(f"max_size must be >= 2 (room for {PAD} and {UNK}), got {max_size}")
        counts = Counter(itertools.chain.from_iterable(token_lists))
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[:max_size - 2]
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens)"

    def index(self, token: str) -> int:
        return self._index.get(token, self.unk_index)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        get, unk = self._index.get, self.unk_index
        return [get(t, unk) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self._tokens[int(i)] for i in ids]

    def to_list(self) -> list[str]:
        return list(self._tokens)


# ---------------------------------------------------------------------------------------------------
# Fixed-length encoding


@dataclass(frozen=True)
class EncodedText:
    """Texts as a fixed-length token matrix: ``tokens`` (N, T) long, ``lengths`` (N,) long (kept tokens,
    at most T), ``padding`` "left" or "right"."""

    tokens: Tensor
    lengths: Tensor
    padding: str = "left"

    @property
    def max_len(self) -> int:
        return int(self.tokens.shape[1])


def pad_ids(ids: Sequence[Sequence[int]], max_len: int, pad_index: int = Vocabulary.pad_index,
            padding: str = "left") -> EncodedText:
    """Truncate each sequence to its first ``max_len`` ids and pad to exactly ``max_len``.

    The scatter into the (N, T) matrix is one vectorised assignment (no loop over tokens)."""
    if max_len < 1:
        raise ConfigError(f"max_len must be >= 1, got {max_len}")
    if padding not in ("left", "right"):
        raise ConfigError(f"padding must be 'left' or 'right', got {padding!r}")
    kept = [s[:max_len] for s in ids]
    n = len(kept)
    lengths = torch.tensor([len(s) for s in kept], dtype=torch.long)
    tokens = torch.full((n, max_len), pad_index, dtype=torch.long)
    total = int(lengths.sum())
    if total:
        flat = torch.tensor(list(itertools.chain.from_iterable(kept)), dtype=torch.long)
        rows = torch.repeat_interleave(torch.arange(n), lengths)
        starts = torch.cumsum(lengths, 0) - lengths
        within = torch.arange(total) - torch.repeat_interleave(starts, lengths)
        cols = within + (max_len - lengths[rows]) if padding == "left" else within
        tokens[rows, cols] = flat
    return EncodedText(tokens, lengths, padding)


def encode_texts(texts: Sequence[str], vocab: Vocabulary, max_len: int, tokenizer: Tokenizer = Tokenizer(),
                 padding: str = "left") -> EncodedText:
    """Tokenise, map to vocabulary indices (unknown -> ``<unk>``), truncate and pad to ``max_len``."""
    return pad_ids([vocab.encode(tokenizer(t)) for t in texts], max_len, vocab.pad_index, padding)


def word_frames(lengths: Tensor, max_len: int, words: Sequence[int] | None = None,
                padding: str = "left") -> tuple[Tensor, Tensor]:
    """Frame indices of chosen word positions in padded sequences.

    Args:
        lengths: (N,) kept tokens per text (:attr:`EncodedText.lengths`).
        max_len: T.
        words: positions in each text's *kept* tokens, 0-based, negative from the end (-1 = last word);
            None means every real (non-padding) word.
        padding: where the padding is ("left": word k of a text of length L is frame T - L + k).

    Returns:
        (frames, valid). With ``words`` given: frames (N, K) long and valid (N,) bool, False where a text
        is too short for a position or two positions name the same word (frames of invalid rows are
        meaningless). With ``words=None``: frames (N, T) with -1 at padding frames, valid = lengths > 0.
    """
    lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1)
    offset = (max_len - lengths) if padding == "left" else torch.zeros_like(lengths)
    if words is None:
        pos = torch.arange(max_len).expand(lengths.shape[0], max_len)
        real = (pos >= offset[:, None]) & (pos < (offset + lengths)[:, None])
        return torch.where(real, pos, torch.full_like(pos, -1)), lengths > 0
    w = torch.as_tensor(list(words), dtype=torch.long)
    if w.numel() == 0:
        raise ConfigError("no word positions chosen")
    pos = torch.where(w[None, :] < 0, lengths[:, None] + w[None, :], w[None, :].expand(lengths.shape[0], -1))
    valid = ((pos >= 0) & (pos < lengths[:, None])).all(1)
    if w.numel() > 1:
        s = torch.sort(pos, 1).values
        valid &= (s[:, 1:] != s[:, :-1]).all(1)
    return pos + offset[:, None], valid
