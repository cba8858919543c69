"""Random draws keyed by (seed, global sample index): a sample's draw does not depend on which batch, shard
or worker it is computed in, so a run split by --batch-size, --timeout batches or --workers draws the same
numbers as one call over all samples (docs/scaling.md)."""
from __future__ import annotations

import numpy as np

#: distinguishes the streams of different uses of the same (seed, index)
STREAM_TARGET = 0x7461726774  # "targt"


def keyed_seed(seed: int, index: int, stream: int | None = None) -> int:
    """A 63-bit seed from (seed, index[, stream]) (numpy SeedSequence hashing; seed may be negative)."""
    key = [int(seed) % 2**64, int(index)] + ([] if stream is None else [int(stream)])
    return int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def keyed_other_class(label, k: int, seed: int, index_offset: int = 0):
    """(B,) long: per sample i a class uniform over the k - 1 classes != label[i], drawn from
    (seed, index_offset + i). ``label`` is a (B,) long tensor; the result is on its device."""
    import torch

    draws = [keyed_seed(seed, index_offset + i, STREAM_TARGET) % (k - 1) for i in range(label.shape[0])]
    r = torch.tensor(draws, dtype=torch.long).to(label.device)
    return r + (r >= label).long()
