"""Text classifiers: Embedding -> nn.RNN / nn.LSTM / nn.GRU -> Linear on the last hidden state.

:class:`TextClassifier` takes token ids (B, T) (left-padded, see certnn.data.text) and returns logits
(B, K). It imports with ``certnn.from_torch(model, (T, E), embedded=True)`` (:func:`text_graph`): the
embedding is split off and the certified input is the embedded sequence (B, T, E), whose centre is
``certnn.embed_tokens(model, tokens)``. Dropout (training only) is removed by the importer.

A trained model is saved as a bundle (models/bundle.py) of kind "text": the :class:`TextModelConfig`
fields, the state_dict, the vocabulary (list of tokens in index order) and ``meta`` with at least
``task``, ``max_len``, ``level``, ``lowercase`` and ``padding`` (how to encode texts for it) plus what
training recorded (test accuracy, seconds, settings).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config import Config
from ..data.text import EncodedText, Tokenizer, Vocabulary, encode_texts
from ..errors import ConfigError, DataError, ModelImportError
from .bundle import load_state, read_bundle, save_bundle

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
#: meta entries a text bundle must carry to encode texts for its model
TEXT_META_KEYS = ("task", "max_len", "level", "lowercase", "padding")


@dataclass(frozen=True)
class TextModelConfig(Config):
    """Architecture of a :class:`TextClassifier` (all plain values, saved in the bundle)."""

    vocab_size: int = 2
    embed_dim: int = 50
    cell: str = "lstm"
    layers: int = 1
    hidden: int = 32
    num_classes: int = 2
    freeze_embedding: bool = True
    dropout: float = 0.0

    choices: ClassVar[dict[str, tuple]] = {"cell": tuple(CELLS)}

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("vocab_size", "embed_dim", "layers", "hidden", "num_classes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"TextModelConfig.{name} must be an integer >= 1, got {v!r}")
        if self.vocab_size < 2 or self.num_classes < 2:
            raise ConfigError("TextModelConfig needs vocab_size >= 2 (<pad>, <unk>) and num_classes >= 2")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"TextModelConfig.dropout must lie in [0, 1), got {self.dropout}")


class TextClassifier(nn.Module):
    """tokens (B, T) -> Embedding (B, T, E) -> RNN/LSTM/GRU (batch first) -> Linear(h_T) -> logits (B, K).

    ``embedding``: an optional (vocab_size, E) initial matrix (e.g. GloVe, certnn.data.text.glove_matrix);
    it is frozen when ``config.freeze_embedding``. Index 0 (``<pad>``) is the padding index."""

    def __init__(self, config: TextModelConfig, embedding: Tensor | None = None):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=Vocabulary.pad_index)
        if embedding is not None:
            w = torch.as_tensor(embedding, dtype=self.embedding.weight.dtype)
            if tuple(w.shape) != (config.vocab_size, config.embed_dim):
                raise ConfigError(f"embedding matrix of shape {tuple(w.shape)}; the config needs "
                                  f"({config.vocab_size}, {config.embed_dim})")
            with torch.no_grad():
                self.embedding.weight.copy_(w)
        self.embedding.weight.requires_grad_(not config.freeze_embedding)
        self.rnn = CELLS[config.cell](config.embed_dim, config.hidden, num_layers=config.layers, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(config.hidden, config.num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        out, _ = self.rnn(self.embedding(tokens))
        return self.fc(self.dropout(out[:, -1]))


@dataclass(frozen=True)
class TextEncoder:
    """How texts become the (N, T) token ids of one model: tokenizer, vocabulary, T and padding side."""

    vocab: Vocabulary
    max_len: int
    tokenizer: Tokenizer = Tokenizer()
    padding: str = "left"

    @classmethod
    def from_meta(cls, vocab: Vocabulary, meta: dict[str, Any]) -> TextEncoder:
        return cls(vocab, int(meta["max_len"]), Tokenizer(level=meta["level"], lowercase=bool(meta["lowercase"])),
                   meta["padding"])

    def encode(self, texts: Sequence[str]) -> EncodedText:
        return encode_texts(list(texts), self.vocab, self.max_len, self.tokenizer, self.padding)

    def kept_tokens(self, text: str) -> list[str]:
        """The tokens of ``text`` the model sees (after truncation to T), unknown ones as they are."""
        return self.tokenizer(text)[:self.max_len]


def text_graph(model: TextClassifier, max_len: int, dtype: torch.dtype = torch.float64):
    """The certnn graph over the embedded sequence, input (T, E) per sample."""
    from ..graph.from_torch import from_torch

    return from_torch(model, (int(max_len), model.config.embed_dim), dtype=dtype, embedded=True)


def save_text_model(path: str | Path, model: TextClassifier, vocab: Vocabulary, meta: dict[str, Any]) -> Path:
    """Write a text bundle; ``meta`` must hold :data:`TEXT_META_KEYS`."""
    missing = [k for k in TEXT_META_KEYS if k not in meta]
    if missing:
        raise ConfigError(f"text model meta lacks {missing}")
    if len(vocab) != model.config.vocab_size:
        raise ConfigError(f"vocabulary of {len(vocab)} tokens for a model with vocab_size {model.config.vocab_size}")
    return save_bundle(path, "text", model.config.to_dict(), model, meta, vocab=vocab.to_list())


def text_model_from_bundle(doc: dict[str, Any], where: str = "bundle") -> tuple[TextClassifier, Vocabulary, dict]:
    if doc.get("kind") != "text":
        raise ModelImportError(f"{where} is a {doc.get('kind')!r} model bundle, not a text model")
    try:
        config = TextModelConfig.from_mapping(doc["config"])
    except (ConfigError, TypeError) as exc:
        raise ModelImportError(f"{where}: bad model config: {exc}") from None
    vocab_list = doc.get("vocab")
    if not isinstance(vocab_list, list):
        raise ModelImportError(f"{where}: a text bundle needs its vocabulary (list of tokens)")
    try:
        vocab = Vocabulary(vocab_list)
    except DataError as exc:
        raise ModelImportError(f"{where}: bad vocabulary: {exc}") from None
    if len(vocab) != config.vocab_size:
        raise ModelImportError(f"{where}: vocabulary of {len(vocab)} tokens but vocab_size {config.vocab_size}")
    meta = doc["meta"]
    missing = [k for k in TEXT_META_KEYS if k not in meta]
    if missing:
        raise ModelImportError(f"{where}: meta lacks {missing} (needed to encode texts for the model)")
    try:
        Tokenizer(level=meta["level"])
        if meta["padding"] not in ("left", "right") or int(meta["max_len"]) < 1:
            raise ConfigError("padding must be left/right and max_len >= 1")
    except (ConfigError, TypeError, ValueError) as exc:
        raise ModelImportError(f"{where}: bad meta: {exc}") from None
    model = TextClassifier(config)
    load_state(model, doc["state_dict"], where)
    return model.eval(), vocab, dict(meta)


def load_text_model(path: str | Path) -> tuple[TextClassifier, Vocabulary, dict[str, Any]]:
    """(model in eval mode, vocabulary, meta) of a text bundle written by :func:`save_text_model`
    (read with ``torch.load(weights_only=True)``); ``TextEncoder.from_meta(vocab, meta).encode(texts)``
    gives its inputs."""
    p = Path(path)
    if not p.is_file():
        raise ModelImportError(f"model file {p} not found")
    doc = read_bundle(p)
    if doc is None:
        raise ModelImportError(f"{p} is not a certnn model bundle (expected a file written by `certnn train` "
                               "or certnn.models.save_text_model)")
    return text_model_from_bundle(doc, str(p))
