"""Text inputs of `certnn radius` on a text model bundle (from `certnn train`): which sentences, which
words are perturbed, and the embedded ball centres.

The ball lives in embedding space: x0 = the embedded, left-padded sentence (T, E); only the embeddings
of the chosen *real* words move (never padding). ``--words 3,5`` names positions among a sentence's kept
words (0-based, negative from the end; the tokens after truncation to T), mapped to padded frames by
certnn.data.text.word_frames; ``--words all`` (default) perturbs every word. Test sentences without the
chosen positions (too short, or two positions naming one word) are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import TYPE_CHECKING

from ..errors import ConfigError, DataError

if TYPE_CHECKING:  # imported by the functions that use them: `certnn --help` does not import torch
    import torch
    from torch import Tensor


def add_text_args(p) -> None:
    g = p.add_argument_group("text models (bundles written by `certnn train`) and image tasks")
    g.add_argument("--task", help="read the test split of this task (default for a text bundle: its own task); "
                                  "mr, sst2, toxic, urls, or mnist / digits instead of --data")
    g.add_argument("--data-dir", help="folder holding text/, embeddings/, mnist/ (default: $CERTNN_DATA_DIR)")
    g.add_argument("--text", action="append", help="certify this sentence instead of the task's test split "
                                                   "(repeatable)")
    g.add_argument("--label", help="labels of the --text sentences, e.g. 1 or 1,0 (default: the model's prediction)")
    g.add_argument("--words", default=None,
                   help="text models: perturb the embeddings of these word positions (0-based among the "
                        "sentence's words, negative from the end), e.g. 3,5 or -1; 'all' (default) = every word")


@dataclass(frozen=True)
class TextInputs:
    graph: Any  # certnn Graph over the embedded sequence (T, E)
    x: Tensor  # (N, T, E) float64 ball centres
    y: Tensor  # (N,) labels
    frames: list[tuple[int, ...]]  # per sample, the padded frames perturbed
    indices: list[int]  # test-split index per sample (or position among --text)
    texts: list[str]
    words: list[list[str]]  # the perturbed tokens per sample
    known: list[list[bool]]  # whether each perturbed token is in the vocabulary (else it is <unk>)
    lengths: Tensor  # (N,) kept tokens
    meta: dict[str, Any]
    task: str | None  # None for --text


def text_bundle(args) -> dict | None:
    from ..models.bundle import read_bundle

    path = Path(args.model)
    if ":" in args.model and args.model.rpartition(":")[0].endswith(".py"):
        return None
    doc = read_bundle(path) if path.is_file() else None
    return doc if doc is not None and doc["kind"] == "text" else None


def parse_words(text: str | None) -> tuple[int, ...] | None:
    if text is None or text.strip().lower() in ("", "all"):
        return None
    try:
        words = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--words {text!r}: expected 'all' or integers separated by commas, e.g. 3,5") from None
    if not words:
        raise ConfigError("--words: no positions given")
    return words


def _labels(text: str | None, n: int, num_classes: int) -> Tensor | None:
    import torch

    if text is None:
        return None
    try:
        labs = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--label {text!r}: expected integers separated by commas") from None
    if len(labs) == 1:
        labs = labs * n
    if len(labs) != n:
        raise ConfigError(f"--label gives {len(labs)} labels for {n} --text sentences")
    if min(labs) < 0 or max(labs) >= num_classes:
        raise ConfigError(f"--label values must lie in 0..{num_classes - 1}")
    return torch.tensor(labs, dtype=torch.long)


def load_text_inputs(args, doc: dict) -> TextInputs:
    """Sentences, labels and perturbed frames from --text or the task's test split (see module docstring)."""
    import torch

    from ..data.text import word_frames
    from ..graph.recurrent import embed_tokens
    from ..models.text import TextEncoder, text_graph, text_model_from_bundle

    if getattr(args, "frames", None) is not None:
        raise ConfigError("--frames indexes the padded sequence; for a text model choose words with --words")
    if getattr(args, "data", None):
        raise ConfigError("--data is for models on arrays; a text model reads sentences (--task, --text)")
    model, vocab, meta = text_model_from_bundle(doc, args.model)
    enc = TextEncoder.from_meta(vocab, meta)
    words = parse_words(args.words)
    texts, y, task_name = _sentences(args, meta, model.config.num_classes)
    indices = list(range(len(texts)))
    encoded = enc.encode(texts)
    frames_t, valid = word_frames(encoded.lengths, enc.max_len, words, encoded.padding)
    keep = _kept_sentences(args, encoded, valid, len(texts))
    tokens = encoded.tokens[keep]
    x = embed_tokens(model, tokens)
    graph = text_graph(model, enc.max_len)
    if y is None:
        with torch.no_grad():
            y = graph.forward(x).argmax(1)
    else:
        y = y[keep]
    fr = frames_t[keep]
    frames = [tuple(int(f) for f in row if f >= 0) for row in fr.tolist()]
    vocab_tokens = [enc.kept_tokens(texts[i]) for i in keep.tolist()]
    L = encoded.lengths[keep]
    off = (enc.max_len - L) if encoded.padding == "left" else torch.zeros_like(L)
    chosen = [[toks[f - int(o)] for f in fs] for toks, fs, o in zip(vocab_tokens, frames, off.tolist())]
    known = [[w in vocab for w in ws] for ws in chosen]
    return TextInputs(graph, x, y, frames, [indices[i] for i in keep.tolist()], [texts[i] for i in keep.tolist()],
                      chosen, known, L, meta, task_name)


def _sentences(args, meta: dict, num_classes: int):
    """(texts, labels or None (then the model's predictions are used), task name or None) of the --text
    sentences or of the task's test split."""
    if args.text:
        if args.task:
            raise ConfigError("give either --text or --task, not both")
        return list(args.text), _labels(args.label, len(args.text), num_classes), None
    if args.label is not None:
        raise ConfigError("--label is for --text sentences; a task's test split has its labels")
    return task_test_split(args, meta, num_classes)


def _kept_sentences(args, encoded, valid, n_texts: int):
    """(n,) long: the sentences that have the --words positions (every --text sentence must), from --start,
    at most --samples of them; DataError when none is left."""
    import torch

    keep = torch.nonzero(valid).flatten()
    if args.text and keep.numel() < n_texts:
        bad = sorted(set(range(n_texts)) - set(keep.tolist()))
        raise DataError(f"--text sentence(s) {bad} have no word at the --words positions "
                        f"({args.words or 'all'}); they have {[int(encoded.lengths[i]) for i in bad]} words")
    keep = keep[keep >= args.start] if args.start else keep
    if args.samples is not None:
        keep = keep[:args.samples]
    if keep.numel() == 0:
        raise DataError(f"no test sentence (from index {args.start}) has the word positions --words {args.words}")
    return keep


def task_test_split(args, meta: dict, num_classes: int, task_name: str | None = None):
    """(texts, labels, task name) of the test split of ``task_name`` (default --task, else the bundle's own
    task), split with the bundle's ``split_seed`` and ``test_fraction`` (the split the model was trained on)."""
    from ..data.text import TEXT_TASKS, load_text_task
    from .common import resolve_data_dir

    name = task_name or getattr(args, "task", None) or meta["task"]
    if name not in TEXT_TASKS:
        raise ConfigError(f"--task {name!r} is not a text task ({', '.join(TEXT_TASKS)})")
    if TEXT_TASKS[name][0] != meta["level"]:
        raise ConfigError(f"the model reads {meta['level']}s; task {name} is a {TEXT_TASKS[name][0]} task")
    task = load_text_task(name, resolve_data_dir(args), seed=int(meta.get("split_seed", 0)),
                          test_fraction=float(meta.get("test_fraction", 0.1)))
    if task.num_classes != num_classes:
        raise ConfigError(f"task {name} has {task.num_classes} classes, the model {num_classes}")
    return list(task.test.texts), task.test.labels, name
