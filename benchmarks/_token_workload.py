"""The token benchmark's workload (bench_tokens.py, bench_layout.py): random
float32 states of prompts of 16–256 tokens, as a model hands them over."""
from __future__ import annotations

import torch

LAYERS, DIM, SHORTEST, LONGEST, BATCH = 12, 768, 16, 256, 50


def batches(prompts: int, seed: int = 0) -> list:
    """[(states [L, b, T, D] float32, mask [b, T])], lengths uniform in 16–256."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(SHORTEST, LONGEST + 1, (prompts,), generator=g)
    out = []
    for start in range(0, prompts, BATCH):
        mine = lengths[start:start + BATCH]
        t = int(mine.max())
        offsets = torch.randn(LAYERS, len(mine), 1, DIM, generator=g)  # each prompt its own centre
        states = torch.randn(LAYERS, len(mine), t, DIM, generator=g) + offsets
        mask = (torch.arange(t)[None] < mine[:, None]).long()
        out.append((states, mask))
    return out
