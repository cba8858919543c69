from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CERTNN_SHARED_DATA", REPO.parent / "shared" / "data"))


#: devices the device-parametrised tests run on: cpu, "virtual" (certnn/testing/virtual_device.py: the cpu
#: standing in for an accelerator, every mix of device and cpu tensors an error) and cuda when torch sees a
#: GPU (CERTNN_TEST_DEVICES=cuda restricts them, e.g. `make test-gpu`)
DEVICES = [d for d in os.environ.get("CERTNN_TEST_DEVICES", "cpu,virtual,cuda").split(",")
           if d != "cuda" or torch.cuda.is_available()]


@pytest.fixture(params=DEVICES or ["cpu"])
def device(request):
    """Each device present (tests taking it run once per device; cuda is absent without a GPU; "virtual"
    runs the test inside VirtualDevice and hands it the virtual device)."""
    if request.param != "virtual":
        yield request.param
        return
    from certnn.testing.virtual_device import VIRTUAL, VirtualDevice

    with VirtualDevice():
        yield VIRTUAL


def write_factory_model(folder: Path, body: str, x_shape: tuple[int, ...], relabel=None):
    """A FILE.py:FACTORY model for the CLI tests: folder/net.py whose make() returns `body` (torch source),
    its weights (torch.manual_seed(0), then make()) in folder/w.pt, and x = torch.rand(x_shape) drawn next
    with y its predicted classes (relabel(y) may change them in place) in folder/d.npz.
    Returns (the module, "net.py:make", weights path, data path)."""
    torch.manual_seed(0)
    src = folder / "net.py"
    src.write_text(f"import torch\n\ndef make():\n    return {body}\n")
    ns: dict = {}
    exec(src.read_text(), ns)
    m = ns["make"]()
    torch.save(m.state_dict(), folder / "w.pt")
    x = torch.rand(*x_shape)
    y = m(x).argmax(1)
    if relabel is not None:
        relabel(y)
    np.savez(folder / "d.npz", x=x.numpy(), y=y.numpy())
    return m, f"{src}:make", str(folder / "w.pt"), str(folder / "d.npz")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def write_tiny_text_data(root: Path, n: int = 40, dim: int = 8) -> Path:
    """A synthetic data directory (text/mr, text/urls, embeddings/ GloVe subset) for fast text tests:
    positive sentences use 'good'-like words, negative ones 'bad'-like words."""
    gen = np.random.default_rng(0)
    pos_w, neg_w, filler = ["good", "great", "fun", "superb"], ["bad", "dull", "awful", "boring"], \
        ["the", "movie", "is", "a", "film", "and", "plot", "it", "was", "very"]

    def sentences(words):
        return [" ".join(gen.choice(filler, size=gen.integers(1, 5)).tolist() + [gen.choice(words)] +
                         gen.choice(filler, size=gen.integers(0, 3)).tolist()) + " ." for _ in range(n)]

    mr = root / "text" / "mr"
    mr.mkdir(parents=True, exist_ok=True)
    (mr / "rt-polarity.pos").write_text("\n".join(sentences(pos_w)) + "\n", encoding="latin-1")
    (mr / "rt-polarity.neg").write_text("\n".join(sentences(neg_w)) + "\n", encoding="latin-1")
    urls = root / "text" / "urls"
    urls.mkdir(parents=True, exist_ok=True)
    rows = ["url,label"] + [f"http://site{i}.com/home,0" for i in range(n)] + \
        [f"https://login-{i}.xyz/verify.php?id={i},1" for i in range(n)]
    (urls / "phishing_urls_balanced_10k.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    emb = root / "embeddings"
    emb.mkdir(parents=True, exist_ok=True)
    words = pos_w + neg_w + filler + ["."]
    vec = gen.normal(size=(len(words), dim)).astype(np.float32)
    vec[:4, 0] += 2.0  # positive words share a direction
    vec[4:8, 0] -= 2.0
    np.savez(emb / "glove6B_50d_subset_51652w.npz", words=np.array(words), vectors=vec,
             glove_rank=np.arange(len(words)))
    return root


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory) -> Path:
    return write_tiny_text_data(tmp_path_factory.mktemp("tiny_text"))
