"""`certnn train`: train a small classifier on a text task (RNN / LSTM / GRU) or an image task (MLP / CNN)
and save it as a model bundle (one weights-only .pt file) that `certnn radius --model` reads.

Text tasks (mr, sst2, toxic, urls) read their files from the data directory (--data-dir, or the
environment variable CERTNN_DATA_DIR); word tasks start from frozen GloVe 50d embeddings, the URL task
(characters) learns its embeddings. Image tasks: mnist (data directory) and digits (scikit-learn's bundled
8x8 digits). The objective comes from one function, :func:`training_loss`, so that other losses (verified
robust training) are one option and a few lines away.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..data.tasks import TEXT_TASKS
from ..errors import ConfigError
from .common import add_log_args, Console, Stopwatch, resolve_data_dir
from .precision_args import add_precision_args, device_of, environment_for

if TYPE_CHECKING:  # imported by the functions that use them: `certnn --help` does not import torch
    import torch
    from ..train.loop import LossFn, TrainConfig, TrainHistory, accuracy, cross_entropy_loss, fit

IMAGE_TASKS = ("mnist", "digits")
#: defaults that depend on the kind of task (flags left unset take these)
TEXT_DEFAULTS = {"hidden": 32, "epochs": 5, "max_len": 20, "cell": "lstm", "char_embed_dim": 16}
IMAGE_DEFAULTS = {"hidden": 100, "epochs": {"mnist": 5, "digits": 40}, "arch": "mlp", "layers": 2}


def register(sub) -> None:
    p = sub.add_parser("train", help="train a small text (RNN/LSTM/GRU) or image (MLP/CNN) classifier; save a bundle",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("task and data")
    g.add_argument("--task", required=True, choices=[*TEXT_TASKS, *IMAGE_TASKS],
                   help="what to train on: a text task (sentences) or an image task")
    g.add_argument("--data-dir", help="folder holding text/, embeddings/, mnist/ (default: $CERTNN_DATA_DIR)")
    g.add_argument("--limit", type=int, help="use at most N training and N test examples (seeded subset)")
    g.add_argument("--test-fraction", type=float, default=0.1,
                   help="text tasks without a test file (mr, toxic, urls): fraction held out for testing")
    g.add_argument("--split-seed", type=int, default=0, help="seed of the train/test split and of --limit")
    g = p.add_argument_group("text model (Embedding -> RNN -> Linear on the last hidden state)")
    g.add_argument("--cell", choices=["rnn", "lstm", "gru"], help=f"default {TEXT_DEFAULTS['cell']}")
    g.add_argument("--max-len", type=int, help=f"tokens per text T (truncated / left-padded); "
                                                f"default {TEXT_DEFAULTS['max_len']}")
    g.add_argument("--min-count", type=int, default=1, help="vocabulary: tokens seen at least this often in training")
    g.add_argument("--embed-dim", type=int, help="learned character embedding size (urls); default "
                                                 f"{TEXT_DEFAULTS['char_embed_dim']}; word tasks use GloVe 50d")
    g.add_argument("--train-embedding", action="store_true", help="fine-tune the GloVe embedding (default frozen)")
    g.add_argument("--oov", choices=["random", "zero"], default="random",
                   help="vectors of vocabulary words missing from GloVe: small seeded random N(0, 0.1^2) or zero")
    g.add_argument("--dropout", type=float, default=0.0, help="dropout on the last hidden state (training only)")
    g = p.add_argument_group("image model")
    g.add_argument("--arch", choices=["mlp", "cnn"], help=f"default {IMAGE_DEFAULTS['arch']}")
    g = p.add_argument_group("shared")
    g.add_argument("--layers", type=int, help="layers (none: 1 recurrent layer for text, 2 hidden layers for MLPs)")
    g.add_argument("--hidden", type=int, help=f"hidden units (default {TEXT_DEFAULTS['hidden']} text, "
                                              f"{IMAGE_DEFAULTS['hidden']} images)")
    g = p.add_argument_group("training (Adam, cross-entropy)")
    g.add_argument("--epochs", type=int, help="default 5 (digits: 40)")
    g.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    g.add_argument("--batch-size", type=int, default=64, help="training examples per step")
    g.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay")
    g.add_argument("--grad-clip", type=float, default=5.0, help="cap on the gradient norm")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and dropout")
    g = p.add_argument_group("verified robust training (certnn.train.robust; docs/training.md)")
    g.add_argument("--robust", choices=["ibp", "crown-ibp", "certrnn"],
                   help="train on the robust cross-entropy of this method's margin lower bounds (with an eps "
                        "schedule) mixed with the clean loss; default: plain cross-entropy")
    g.add_argument("--eps", type=float, help="final training radius (required with --robust); text tasks: on the "
                                             "embeddings of every frame, images: pixels in [0, 1]")
    g.add_argument("--norm", default="inf", choices=["inf", "2"], help="norm of the training ball")
    g.add_argument("--warmup-epochs", type=int, default=0, help="clean epochs before the eps ramp")
    g.add_argument("--ramp-epochs", type=int, help="epochs over which eps ramps 0 -> --eps and the clean-loss "
                                                   "weight 1 -> --kappa-final (default: half the epochs left)")
    g.add_argument("--kappa-final", type=float, default=0.5, help="final weight of the clean loss")
    g.add_argument("--beta-final", type=float, default=0.0,
                   help="crown-ibp: final weight of the CROWN-IBP bound against IBP (1 -> beta-final)")
    p.add_argument("--out", required=True, help="model bundle to write (.pt, read with weights_only=True)")
    p.add_argument("--json", metavar="OUT.json", help="write settings and results (schema_version'd)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_log_args(p)
    add_precision_args(p, dtype=False, what="where the model is trained")
    p.set_defaults(func=run)


def training_loss(args) -> LossFn:
    """The objective of plain training: cross-entropy (``--robust`` runs :func:`_fit_robust` instead)."""
    from ..train.loop import cross_entropy_loss

    return cross_entropy_loss


def _check_flags(args, text: bool) -> None:
    wrong = {"text": ["arch"], "image": ["cell", "max_len", "embed_dim"]}["text" if text else "image"]
    given = [w for w in wrong if getattr(args, w) is not None]
    if not text and args.train_embedding:
        given.append("train_embedding")
    if given:
        kind = "text" if text else "image"
        names = ", ".join("--" + g.replace("_", "-") for g in given)
        raise ConfigError(f"{names} do(es) not apply to the {kind} task {args.task}")
    for name in ("limit", "layers", "hidden", "max_len", "embed_dim", "epochs"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if not 0.0 <= args.dropout < 1.0:
        raise ConfigError(f"--dropout must lie in [0, 1), got {args.dropout}")
    if args.robust is None:
        given = [f for f, v in (("--eps", args.eps), ("--ramp-epochs", args.ramp_epochs)) if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --robust {{ibp,crown-ibp,certrnn}}")
    elif args.eps is None:
        raise ConfigError("--robust needs --eps (the final training radius)")


def run(args) -> int:
    import torch

    from ..train.loop import TrainConfig, accuracy, fit

    text = args.task in TEXT_TASKS
    _check_flags(args, text)
    con = Console.for_args(args)
    torch.manual_seed(args.seed)
    prep = _prepare_text(args, con) if text else _prepare_image(args, con)
    epochs = args.epochs or (TEXT_DEFAULTS["epochs"] if text else IMAGE_DEFAULTS["epochs"][args.task])
    config = TrainConfig(epochs=epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         weight_decay=args.weight_decay, grad_clip=args.grad_clip)
    dev = device_of(args)
    if dev.type != "cpu":  # the model, in place, and the data; the bundle is saved from the cpu
        prep["model"].to(dev)
        prep["train"] = tuple(torch.as_tensor(t).to(dev) for t in prep["train"])
        prep["test"] = tuple(torch.as_tensor(t).to(dev) for t in prep["test"])
    model, (xtr, ytr), (xte, yte) = prep["model"], prep["train"], prep["test"]
    con.print(f"training {prep['name']} on {args.task}: {xtr.shape[0]} training, {xte.shape[0]} test examples, "
              f"{epochs} epochs")
    sw = Stopwatch()

    def on_epoch(e: int, n: int, loss: float) -> None:
        con.print(f"  epoch {e}/{n}: training loss {loss:.4f} ({sw():.1f} s)")

    if args.robust:
        hist, extra = _fit_robust(args, prep, config, text, con, sw)
        loss_name = f"robust_{args.robust}"
    else:
        with con.progress("training", epochs) as task:
            def epoch_done(e: int, n: int, loss: float) -> None:
                task(e, n)
                on_epoch(e, n, loss)

            hist, extra = fit(model, xtr, ytr, config, training_loss(args), epoch_done, on_batch=task.detail), {}
        loss_name = "cross_entropy"
    test_acc = accuracy(model, xte, yte)
    train_acc = accuracy(model, xtr, ytr)
    meta: dict[str, Any] = {**prep["meta"], "task": args.task, "model_name": prep["name"],
                            "test_accuracy": test_acc, "train_accuracy": train_acc, "train_seconds": hist.seconds,
                            "epoch_loss": list(hist.epoch_loss), "train_size": int(xtr.shape[0]),
                            "test_size": int(xte.shape[0]), "split_seed": args.split_seed,
                            "test_fraction": args.test_fraction, "limit": args.limit,
                            "training": {**config.to_dict(), "loss": loss_name, **extra}}
    model.cpu()
    path = prep["save"](args.out, meta)
    con.print(f"{prep['name']} on {args.task}: test accuracy {test_acc:.4f} ({xte.shape[0]} examples), "
              f"training accuracy {train_acc:.4f}, trained in {hist.seconds:.1f} s; wrote {path}")
    if args.json:
        from ..report.records import write_json

        settings = {k: v for k, v in vars(args).items() if k != "func"}
        write_json(args.json, "train", settings, [], {k: meta[k] for k in (
            "test_accuracy", "train_accuracy", "train_seconds", "epoch_loss", "train_size", "test_size")},
            {**environment_for(args), "dtype": "float32"})
        con.print(f"wrote {args.json}")
    return 0


def _fit_robust(args, prep: dict[str, Any], config: TrainConfig, text: bool, con: Console,
                sw) -> tuple[TrainHistory, dict]:
    """Verified robust training (certnn.train.robust.train_robust) with the command's settings. Text
    models are trained with the ball on the embeddings of every frame (padding included: a superset of
    what `certnn radius --words all` certifies); images with pixels clipped to [0, 1]."""
    from ..train.loop import TrainHistory

    from ..train.robust import RobustTrainConfig, train_robust

    model, (xtr, ytr) = prep["model"], prep["train"]
    left = config.epochs - args.warmup_epochs
    ramp = args.ramp_epochs if args.ramp_epochs is not None else max(1, left // 2) if left > 0 else 0
    if text:
        input_shape = (int(xtr.shape[1]), model.config.embed_dim)
    else:
        input_shape = tuple(int(s) for s in xtr.shape[1:])
    cfg = RobustTrainConfig(method=args.robust, eps=args.eps, norm=args.norm, epochs=config.epochs, lr=config.lr,
                            batch_size=config.batch_size, warmup_epochs=args.warmup_epochs, ramp_epochs=ramp,
                            kappa_final=args.kappa_final, beta_final=args.beta_final, embedded=text,
                            seed=config.seed, clip=None if text else (0.0, 1.0))

    def progress(done: int, total: int, rec) -> None:
        rob = "" if rec.robust_loss is None else (f", robust loss {rec.robust_loss:.4f}, verified error on the "
                                                  f"batches {rec.verified_err:.3f}")
        con.print(f"  epoch {done}/{total}: eps {rec.eps:.4g}, clean loss {rec.clean_loss:.4f}{rob} ({sw():.1f} s)")

    with con.progress(f"training ({args.robust})", cfg.epochs) as task:
        def epoch_done(done: int, total: int, rec) -> None:
            task(done, total)
            progress(done, total, rec)

        log = train_robust(model, xtr, ytr, input_shape, cfg, epoch_done, on_batch=task.detail)
    hist = TrainHistory(tuple(e.loss for e in log.epochs), sum(e.steps for e in log.epochs), log.seconds)
    return hist, {"robust": cfg.to_dict(), "final_verified_err": log.epochs[-1].verified_err}


def _prepare_text(args, con: Console) -> dict[str, Any]:
    from ..data.text import encode_texts, glove_matrix, load_glove, load_text_task, pad_ids, Vocabulary
    from ..models.text import TextClassifier, TextModelConfig, save_text_model

    root = resolve_data_dir(args)
    task = load_text_task(args.task, root, seed=args.split_seed, test_fraction=args.test_fraction, limit=args.limit)
    tok = task.tokenizer()
    max_len = args.max_len or TEXT_DEFAULTS["max_len"]
    train_tokens = tok.batch(task.train.texts)
    vocab = Vocabulary.build(train_tokens, min_count=args.min_count)
    extra: dict[str, Any] = {}
    if task.level == "word":
        emb, found = glove_matrix(vocab, load_glove(root), oov=args.oov, seed=args.seed)
        embed_dim, freeze = emb.shape[1], not args.train_embedding
        extra = {"embedding": "glove6B_50d", "glove_found": found, "oov": args.oov}
        con.print(f"vocabulary: {len(vocab)} tokens ({found} in GloVe) from {len(task.train)} training texts")
    else:
        emb, embed_dim, freeze = None, args.embed_dim or TEXT_DEFAULTS["char_embed_dim"], False
        extra = {"embedding": "learned"}
        con.print(f"vocabulary: {len(vocab)} characters from {len(task.train)} training texts")
    cfg = TextModelConfig(vocab_size=len(vocab), embed_dim=embed_dim, cell=args.cell or TEXT_DEFAULTS["cell"],
                          layers=args.layers or 1, hidden=args.hidden or TEXT_DEFAULTS["hidden"],
                          num_classes=task.num_classes, freeze_embedding=freeze, dropout=args.dropout)
    model = TextClassifier(cfg, emb)
    xtr = pad_ids([vocab.encode(t) for t in train_tokens], max_len).tokens
    xte = encode_texts(task.test.texts, vocab, max_len, tok).tokens
    meta = {"max_len": max_len, "level": task.level, "lowercase": tok.lowercase, "padding": "left",
            "classes": list(task.classes), "min_count": args.min_count, **extra}
    name = f"{cfg.cell.upper()}-{cfg.layers}-{cfg.hidden}"

    def save(path, m):
        return save_text_model(path, model, vocab, m)

    return {"model": model, "train": (xtr, task.train.labels), "test": (xte, task.test.labels), "meta": meta,
            "name": name, "save": save}


def _prepare_image(args, con: Console) -> dict[str, Any]:
    import torch

    from ..models.image import ImageModelConfig, build_image_model, save_image_model

    if args.task == "mnist":
        from ..data.mnist import mnist_train_test

        xtr, ytr, xte, yte = mnist_train_test(resolve_data_dir(args))
        shape = (1, 28, 28)
    else:
        from ..data.digits import load_digits_split

        xtr, ytr, xte, yte = load_digits_split()
        shape = (1, 8, 8)
    xtr, xte = xtr.reshape(-1, *shape).float(), xte.reshape(-1, *shape).float()
    if args.limit:
        gen = torch.Generator().manual_seed(args.split_seed + 1)
        itr = torch.randperm(xtr.shape[0], generator=gen)[:args.limit].sort().values
        ite = torch.randperm(xte.shape[0], generator=gen)[:args.limit].sort().values
        xtr, ytr, xte, yte = xtr[itr], ytr[itr], xte[ite], yte[ite]
    arch = args.arch or IMAGE_DEFAULTS["arch"]
    cfg = ImageModelConfig(arch=arch, input_shape=shape, layers=args.layers or IMAGE_DEFAULTS["layers"],
                           hidden=args.hidden or IMAGE_DEFAULTS["hidden"], num_classes=10)
    model = build_image_model(cfg)
    name = (f"MLP-{cfg.layers}x{cfg.hidden}" if arch == "mlp" else f"CNN-16-32-{cfg.hidden}")
    meta = {"input_shape": list(shape), "input_range": [0.0, 1.0]}

    def save(path, m):
        return save_image_model(path, model, cfg, m)

    return {"model": model, "train": (xtr, ytr), "test": (xte, yte), "meta": meta, "name": name, "save": save}
