"""Text classification tasks, tokenisation, vocabularies, fixed-length padding and GloVe embeddings.

Every loader reads from a data directory given explicitly (``data_dir``: the folder that holds ``text/``
and ``embeddings/``, e.g. ``../shared/data``); nothing is downloaded and URLs are never opened (the URL
task is text only). Missing or malformed files raise :class:`~certnn.errors.DataError` naming the file and
what is wrong with it.

=========  =====================================================  ======  ======================================
task       file(s) under ``data_dir``                             level   split
=========  =====================================================  ======  ======================================
``mr``     ``text/mr/rt-polarity.pos`` / ``.neg`` (latin-1)       word    seeded 90/10 (``test_fraction``)
``sst2``   ``text/sst2/stsa.binary.train`` / ``.test``            word    the files' own train / test (dev unused)
``toxic``  ``text/toxic/civil_comments_balanced_10k.csv``         word    seeded 90/10; label ``target >= 0.5``
``urls``   ``text/urls/phishing_urls_balanced_10k.csv``           char    seeded 90/10; label 1 = phishing
=========  =====================================================  ======  ======================================

Certification needs a fixed sequence length T, so every text becomes exactly T tokens:

* truncation keeps the *first* T tokens (the start of a sentence, the scheme and host of a URL);
* padding is on the *left* by default (``<pad>`` tokens first, the words last), so the last hidden state
  of a recurrent model, which the classifier reads, comes right after the words. Word k (0-based) of a
  text of L kept tokens sits at frame ``T - L + k`` (:func:`word_frames`).

The vocabulary (:class:`Vocabulary`) is built from the training split only: ``<pad>`` is index 0,
``<unk>`` index 1, then tokens by descending count (ties alphabetically) with at least ``min_count``
occurrences. :func:`glove_matrix` gives word tasks a GloVe 6B 50d initialisation: words found in GloVe get
their vector, other words (out of vocabulary for GloVe) a small seeded random vector N(0, ``oov_std``²)
(or zero, ``oov="zero"``); ``<pad>`` and ``<unk>`` are zero.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from .npz import read_npz_arrays
from .tasks import TEXT_TASKS  # noqa: F401  (task name -> (token level, class names))
# text to token ids (data/text_encoding.py), importable from here as before
from .text_encoding import EncodedText, Tokenizer, Vocabulary, encode_texts, pad_ids, word_frames  # noqa: F401

GLOVE_FILE = "embeddings/glove6B_50d_subset_51652w.npz"


# ---------------------------------------------------------------------------------------------------
# Tasks


@dataclass(frozen=True)
class TextSplit:
    texts: tuple[str, ...]
    labels: Tensor  # (N,) long

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Sequence[int] | np.ndarray) -> TextSplit:
        idx = np.asarray(idx, dtype=np.int64)
        return TextSplit(tuple(self.texts[i] for i in idx), self.labels[torch.as_tensor(idx)])


@dataclass(frozen=True)
class TextTask:
    """A text classification task: name, token level ("word" / "char"), class names, train / test."""

    name: str
    level: str
    classes: tuple[str, ...]
    train: TextSplit
    test: TextSplit

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def tokenizer(self) -> Tokenizer:
        return Tokenizer(level=self.level)


def _file(data_dir: str | Path, rel: str, task: str) -> Path:
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"data directory {root} not found")
    p = root / rel
    if not p.is_file():
        raise DataError(f"{task}: file {p} not found (the text tasks are read from DATA_DIR/text/...)")
    return p


def _read_text(p: Path, encoding: str) -> str:
    try:
        return p.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not valid {encoding} text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc}") from None


def _lines(p: Path, encoding: str = "latin-1") -> list[str]:
    lines = [ln.strip() for ln in _read_text(p, encoding).splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise DataError(f"{p}: the file holds no text lines")
    return lines


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded permutation of range(n) cut into (train, test); test has round(n * test_fraction) items."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return perm[n_test:], perm[:n_test]


def _seeded_split(task: str, texts: list[str], labels: list[int], seed: int, test_fraction: float) -> TextTask:
    level, classes = TEXT_TASKS[task]
    split = TextSplit(tuple(texts), torch.tensor(labels, dtype=torch.long))
    tr, te = split_indices(len(texts), test_fraction, seed)
    return TextTask(task, level, classes, split.subset(tr), split.subset(te))


def load_mr(data_dir: str | Path, seed: int = 0, test_fraction: float = 0.1) -> TextTask:
    """Movie-review polarity (Pang & Lee 2005): 5,331 positive (label 1) + 5,331 negative sentences."""
    pos = _lines(_file(data_dir, "text/mr/rt-polarity.pos", "mr"))
    neg = _lines(_file(data_dir, "text/mr/rt-polarity.neg", "mr"))
    return _seeded_split("mr", pos + neg, [1] * len(pos) + [0] * len(neg), seed, test_fraction)


def _sst2_file(p: Path) -> TextSplit:
    texts, labels = [], []
    for k, ln in enumerate(_read_text(p, "latin-1").splitlines(), 1):
        ln = ln.strip()
        if not ln:
            continue
        lab, _, sent = ln.partition(" ")
        if lab not in ("0", "1") or not sent.strip():
            raise DataError(f"{p}, line {k}: expected 'LABEL SENTENCE' with LABEL 0 or 1, got {ln[:60]!r}")
        labels.append(int(lab))
        texts.append(sent.strip())
    if not texts:
        raise DataError(f"{p}: the file holds no labelled sentences")
    return TextSplit(tuple(texts), torch.tensor(labels, dtype=torch.long))


def load_sst2(data_dir: str | Path, seed: int = 0, test_fraction: float = 0.1) -> TextTask:
    """SST-2 at sentence level (Socher et al. 2013): the files' train (6,920) and test (1,821) splits.
    ``seed`` and ``test_fraction`` are accepted for a uniform signature and not used."""
    level, classes = TEXT_TASKS["sst2"]
    return TextTask("sst2", level, classes, _sst2_file(_file(data_dir, "text/sst2/stsa.binary.train", "sst2")),
                    _sst2_file(_file(data_dir, "text/sst2/stsa.binary.test", "sst2")))


def _csv_rows(p: Path, need: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    text = _read_text(p, "utf-8")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        raise DataError(f"{p}: empty CSV file")
    missing = [c for c in need if c not in reader.fieldnames]
    if missing:
        raise DataError(f"{p}: CSV header {reader.fieldnames} lacks column(s) {missing}")
    try:
        rows = [(reader.line_num, r) for r in reader]
    except csv.Error as exc:
        raise DataError(f"{p}, line {reader.line_num}: malformed CSV ({exc})") from None
    if not rows:
        raise DataError(f"{p}: the CSV file holds no rows")
    return rows


def load_toxic(data_dir: str | Path, seed: int = 0, test_fraction: float = 0.1) -> TextTask:
    """Civil Comments (Jigsaw), balanced 10,000 comments; label 1 (toxic) when ``target >= 0.5``."""
    p = _file(data_dir, "text/toxic/civil_comments_balanced_10k.csv", "toxic")
    texts, labels = [], []
    for line, r in _csv_rows(p, ("comment_text", "target")):
        try:
            t = float(r["target"])
        except (TypeError, ValueError):
            raise DataError(f"{p}, line {line}: target {r['target']!r} is not a number") from None
        if not 0.0 <= t <= 1.0:
            raise DataError(f"{p}, line {line}: target {t} outside [0, 1]")
        texts.append(r["comment_text"] or "")
        labels.append(int(t >= 0.5))
    return _seeded_split("toxic", texts, labels, seed, test_fraction)


def load_urls(data_dir: str | Path, seed: int = 0, test_fraction: float = 0.1) -> TextTask:
    """10,000 URLs, balanced phishing (1) / benign (0), read as text (character level). The URLs are
    never opened or fetched."""
    p = _file(data_dir, "text/urls/phishing_urls_balanced_10k.csv", "urls")
    texts, labels = [], []
    for line, r in _csv_rows(p, ("url", "label")):
        lab = (r["label"] or "").strip()
        if lab not in ("0", "1"):
            raise DataError(f"{p}, line {line}: label {r['label']!r} is not 0 or 1")
        texts.append(r["url"] or "")
        labels.append(int(lab))
    return _seeded_split("urls", texts, labels, seed, test_fraction)


_LOADERS = {"mr": load_mr, "sst2": load_sst2, "toxic": load_toxic, "urls": load_urls}


def load_text_task(name: str, data_dir: str | Path, seed: int = 0, test_fraction: float = 0.1,
                   limit: int | None = None) -> TextTask:
    """One of :data:`TEXT_TASKS` from ``data_dir``; ``limit`` keeps a seeded random subset of at most
    ``limit`` texts of each split (for quick runs)."""
    if name not in _LOADERS:
        raise ConfigError(f"unknown text task {name!r}; choose one of {', '.join(_LOADERS)}")
    task = _LOADERS[name](data_dir, seed=seed, test_fraction=test_fraction)
    if limit is None:
        return task
    if limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    rng = np.random.default_rng(seed + 1)

    def cut(s: TextSplit) -> TextSplit:
        return s if len(s) <= limit else s.subset(np.sort(rng.permutation(len(s))[:limit]))

    return TextTask(task.name, task.level, task.classes, cut(task.train), cut(task.test))


# ---------------------------------------------------------------------------------------------------
# GloVe


def load_glove(data_dir: str | Path) -> tuple[list[str], np.ndarray]:
    """GloVe 6B 50d (the 51,652-word subset): (words, vectors float32 (N, 50))."""
    p = _file(data_dir, GLOVE_FILE, "glove")
    words, vectors = read_npz_arrays(p, ("words", "vectors"))
    if vectors.ndim != 2 or words.ndim != 1 or words.shape[0] != vectors.shape[0]:
        raise DataError(f"{p}: 'words' {words.shape} and 'vectors' {vectors.shape} do not match")
    if not np.isfinite(vectors).all():
        raise DataError(f"{p}: 'vectors' contains NaN or infinite values")
    return [str(w) for w in words.tolist()], np.asarray(vectors, dtype=np.float32)


def glove_matrix(vocab: Vocabulary, glove: tuple[list[str], np.ndarray], oov: str = "random",
                 oov_std: float = 0.1, seed: int = 0) -> tuple[Tensor, int]:
    """Embedding matrix (len(vocab), E) float32 for ``vocab`` from ``glove`` (see :func:`load_glove`)
    and the number of vocabulary words found in GloVe. Words not in GloVe get N(0, oov_std²) vectors
    (seeded) or zeros (``oov="zero"``); ``<pad>`` and ``<unk>`` are zero."""
    if oov not in ("random", "zero"):
        raise ConfigError(f"oov must be 'random' or 'zero', got {oov!r}")
    words, vectors = glove
    row = {w: i for i, w in enumerate(words)}
    idx = torch.tensor([row.get(t, -1) for t in vocab.to_list()], dtype=torch.long)
    idx[:2] = -1
    found = idx >= 0
    E = vectors.shape[1]
    gen = torch.Generator().manual_seed(seed)
    out = (torch.randn(len(vocab), E, generator=gen) * oov_std if oov == "random"
           else torch.zeros(len(vocab), E))
    out[found] = torch.as_tensor(vectors)[idx[found]]
    out[:2] = 0.0
    return out, int(found.sum())
