"""Sensitive words: the certified radius of each word's embedding alone, and a gradient-saliency baseline.

For a sentence of L real words (left- or right-padded to T frames), word k is perturbed alone: the set is
``{x0 + scale_k * z : ||z||_p <= eps}`` where ``scale_k`` is 1 on frame ``f_k`` (the frame of word k,
:func:`certnn.data.text.word_frames`) and 0 elsewhere, i.e. only word k's embedding moves, by at most eps
in Lp. Its certified radius ``r_k`` (a proved lower bound on the smallest such change that flips the
prediction) ranks the words: the smallest ``r_k`` is the most sensitive word (rank 1).

All (sentence, word) pairs are certified at once: the pairs are stacked into one batch of P = sum L
samples and handed to :func:`certnn.certify.per_sample_frames.radius_by_frames`, which groups them by frame
(at most T groups) and runs one batched radius search per group. Each pair's search is the same as a
separate call for that sentence and word with the same settings.

The baseline (not a bound of any kind): the gradient saliency ``s_k = ||d m / d x_{f_k}||_q`` of the
logit margin ``m = f_y - max_{j != y} f_j`` with respect to the embedding of word k, q the dual exponent
of the ball's norm (1/p + 1/q = 1), so that ``m / s_k`` is the first-order (linearised) distance to the
decision boundary along word k; larger ``s_k`` = more sensitive. :func:`ranking_agreement` compares the two
rankings (Spearman's rho and whether the most sensitive word agrees).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..certify.per_sample_frames import radius_by_frames
from ..certify.radius import CertifyConfig, RadiusConfig
from ..config import dual_exponent
from ..errors import ConfigError, DataError
from ..graph.ir import Graph

Progress = Callable[[int, int], None]

__all__ = ["WordSensitivity", "word_sensitivity", "ranking_agreement", "word_pairs"]


@dataclass(frozen=True)
class WordSensitivity:
    """Per (sentence, word) pair, flat over the P = sum of the sentences' lengths pairs, sentence-major.

    Attributes:
        sentence: (P,) index of the pair's sentence in the input batch.
        position: (P,) word position k in the sentence (0-based among its real words).
        frame: (P,) padded frame of the word.
        certified_radius: (P,) float64, proved lower bound of the radius of word k alone (0 where the
            sentence is misclassified or nothing was certified down to eps_min).
        saliency: (P,) float64, gradient saliency ||d margin / d x_frame||_q (baseline, no guarantee).
        rank: (P,) 1-based rank of the word in its sentence by certified radius, ascending (1 = smallest
            radius = most sensitive); ties broken by larger saliency, then position.
        saliency_rank: (P,) 1-based rank by saliency, descending (1 = largest gradient); ties by position.
        label, predicted, correct: (N,) per sentence.
        margin: (N,) float64 logit margin f_y - max_{j != y} f_j at the unperturbed sentence.
        target: (P,) the target class of each pair's search, or None (untargeted: every other class).
        time_s: (P,) seconds attributed per pair by the radius search.
        norm, method: the ball's norm and the certification method.
    """

    sentence: Tensor
    position: Tensor
    frame: Tensor
    certified_radius: Tensor
    saliency: Tensor
    rank: Tensor
    saliency_rank: Tensor
    label: Tensor
    predicted: Tensor
    correct: Tensor
    margin: Tensor
    target: Tensor | None
    time_s: Tensor
    norm: str
    method: str

    def pairs_of(self, i: int) -> Tensor:
        """Indices into the flat (P,) fields of sentence i's words, in word order."""
        return torch.nonzero(self.sentence == i).flatten()


def word_pairs(lengths: Tensor, max_len: int, padding: str = "left") -> tuple[Tensor, Tensor, Tensor]:
    """(sentence, position, frame), each (P,) long: every real word of every sentence, sentence-major."""
    lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1)
    if lengths.numel() and (lengths.min() < 0 or lengths.max() > max_len):
        raise DataError(f"lengths must lie in [0, {max_len}]")
    sentence = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)
    starts = torch.cumsum(lengths, 0) - lengths
    position = torch.arange(sentence.numel()) - starts[sentence]
    offset = (max_len - lengths) if padding == "left" else torch.zeros_like(lengths)
    return sentence, position, position + offset[sentence]


def _margins(graph: Graph, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Logits (N, K) and the margin f_y - max_{j != y} f_j (N,), differentiable in x."""
    logits = graph.forward(x)
    true = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], -torch.inf)
    return logits, true - others.max(1).values


def _ranks(keys: list[Tensor], sentence: Tensor) -> Tensor:
    """1-based rank within each sentence, lexicographic in ``keys`` (ascending), batched with stable sorts."""
    order = torch.arange(sentence.numel())
    for k in reversed(keys):  # least significant key first; stable sorts keep the earlier order on ties
        order = order[torch.sort(k[order], stable=True).indices]
    order = order[torch.sort(sentence[order], stable=True).indices]
    counts = torch.bincount(sentence, minlength=int(sentence.max()) + 1 if sentence.numel() else 0)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(sentence)
    rank[order] = torch.arange(sentence.numel()) - starts[sentence[order]] + 1
    return rank


def word_sensitivity(graph: Graph, x: Tensor, lengths: Tensor, y: Tensor | None = None,
                     config: CertifyConfig = CertifyConfig(method="certrnn", norm="2"),
                     search: RadiusConfig = RadiusConfig(), padding: str = "left",
                     progress: Progress | None = None, dtype: torch.dtype | str = torch.float64,
                     device=None) -> WordSensitivity:
    """Certified radius and gradient saliency of every real word of every sentence (module docstring).

    Args:
        graph: a certnn graph over embedded sequences (T, E) (certnn.models.text_graph, or
            ``certnn.from_torch(model, (T, E), embedded=True)``).
        x: (N, T, E) embedded sentences (``certnn.embed_tokens(model, tokens)``), the balls' centres.
        lengths: (N,) real words per sentence (``EncodedText.lengths``), each >= 1.
        y: (N,) labels; None = the model's predictions.
        config: method, norm, target, clip, batch size (``frames`` must be None; ``frame_eps`` a single
            value, the weight of the perturbed word, or None).
        search: the radius search (doubling + bisection), the same for every pair.
        padding: "left" (certnn's default) or "right": where the words sit in the T frames.
        progress: called with (pairs done, pairs).

    Returns:
        :class:`WordSensitivity` (flat over (sentence, word) pairs).
    """
    x, lengths = _checked_inputs(graph, x, lengths, config, padding)
    sentence, position, frame = word_pairs(lengths, graph.input_shape[0], padding)

    # gradient saliency of the margin w.r.t. each frame (one backward pass for the whole batch)
    with torch.no_grad():
        pred = graph.forward(x).argmax(1)
    yy = pred if y is None else torch.as_tensor(y).long().reshape(-1)
    if yy.numel() != x.shape[0]:
        raise DataError(f"{yy.numel()} labels for {x.shape[0]} sentences")
    xg = x.clone().requires_grad_(True)
    with torch.enable_grad():
        _, margin = _margins(graph, xg, yy)
        (grad,) = torch.autograd.grad(margin.sum(), xg)
    q = dual_exponent(config.norm)
    saliency = torch.linalg.vector_norm(grad[sentence, frame], ord=q, dim=-1).detach()

    # certified radius of each pair: one sample per (sentence, word), perturbing that word's frame alone
    xs = x[sentence]
    res = radius_by_frames(graph, xs, yy[sentence], [(int(f),) for f in frame.tolist()], config, search,
                           progress=progress, dtype=dtype, device=device)
    radius = res.certified_radius
    rank = _ranks([radius, -saliency, position.double()], sentence)
    saliency_rank = _ranks([-saliency, position.double()], sentence)
    return WordSensitivity(sentence, position, frame, radius, saliency, rank, saliency_rank, yy, pred, pred == yy,
                           margin.detach(), res.target, res.time_s, config.norm, config.method)


def _checked_inputs(graph: Graph, x: Tensor, lengths: Tensor, config: CertifyConfig,
                    padding: str) -> tuple[Tensor, Tensor]:
    """(x as float64 (N, T, E), lengths as int64 (N,)), after checking the graph, config, padding and shapes."""
    if len(graph.input_shape) != 2:
        raise DataError(f"word sensitivity needs a sequence model over (T, E) frames; this model's input has "
                        f"shape {graph.input_shape}")
    if config.frames is not None:
        raise ConfigError("word_sensitivity perturbs one word at a time; CertifyConfig.frames must be None")
    if config.frame_eps is not None and len(config.frame_eps) != 1:
        raise ConfigError("word_sensitivity: frame_eps must be one value (the weight of the perturbed word)")
    if padding not in ("left", "right"):
        raise ConfigError(f"padding must be 'left' or 'right', got {padding!r}")
    T = graph.input_shape[0]
    x = torch.as_tensor(x).to(torch.float64)
    if x.ndim != 3 or tuple(x.shape[1:]) != tuple(graph.input_shape):
        raise DataError(f"x must be (N, {T}, {graph.input_shape[1]}) embedded sentences, got {tuple(x.shape)}")
    lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1)
    if lengths.numel() != x.shape[0]:
        raise DataError(f"{lengths.numel()} lengths for {x.shape[0]} sentences")
    if lengths.numel() == 0:
        raise DataError("no sentences given")
    if (lengths < 1).any():
        raise DataError(f"sentence(s) {torch.nonzero(lengths < 1).flatten().tolist()} have no words")
    return x, lengths


def _spearman(a: Tensor, b: Tensor) -> float:
    """Spearman's rho of two rankings without ties (1-based ranks of n items); nan for n < 2."""
    n = a.numel()
    if n < 2:
        return float("nan")
    d = (a - b).double()
    return float(1 - 6 * (d * d).sum() / (n * (n * n - 1)))


def ranking_agreement(ws: WordSensitivity, sentences: Tensor | None = None) -> dict[str, object]:
    """Agreement of the certified-radius ranking and the saliency ranking, per sentence and on average.

    Returns ``{"spearman": [rho per sentence (nan below 2 words)], "top1": [bool per sentence],
    "mean_spearman": mean rho over sentences with >= 2 words, "top1_agreement": fraction of sentences whose
    most sensitive word is the same under both, "sentences": the sentence indices used}``. By default the
    correctly classified sentences are used (a misclassified one has radius 0 for every word)."""
    if sentences is None:
        sentences = torch.nonzero(ws.correct).flatten()
    rhos, top1 = [], []
    for i in sentences.tolist():
        idx = ws.pairs_of(i)
        rhos.append(_spearman(ws.rank[idx], ws.saliency_rank[idx]))
        top1.append(bool((ws.rank[idx] == 1).nonzero().flatten().tolist() ==
                         (ws.saliency_rank[idx] == 1).nonzero().flatten().tolist()))
    finite = [r for r in rhos if r == r]
    return {"sentences": sentences.tolist(), "spearman": rhos, "top1": top1,
            "mean_spearman": sum(finite) / len(finite) if finite else float("nan"),
            "top1_agreement": sum(top1) / len(top1) if top1 else float("nan")}
