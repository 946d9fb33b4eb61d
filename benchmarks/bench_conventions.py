"""What two numeric conventions change, measured (no timings):

1. Round-off eigenvalues. For float32 Gram matrices of known rank (linear
   kernels of low-rank data, centred token kernels) and for float32 RBF
   kernels against their float64 twins: the largest eigenvalue that
   round-off alone produced, in units of ε₃₂·λ_max; and the entropies
   pyfastent gives float32 inputs against float64 ones at several α with
   its floor (``pyfastent.ops._torch_spectrum.roundoff_floor``).
2. The "Layer by Layer" code's conventions (``pyfastent.compat.information_flow``)
   against pyfastent's prompt entropy (``pf.prompt_entropy``), in nats at
   α = 1: the elementwise clamp max(K, 0) on isotropic, power-law and
   low-rank token states and on two-token prompts; and, alone, the α = 2
   shortcut Σ K² / dim² against Σ K² / (tr K)² of the same clamped matrix on
   the D × D side (more tokens than dimensions).

Each check is computed twice where it can be (NumPy float64 formula beside
pyfastent) and asserted before it is written. Results:
``benchmarks/results/bench_conventions_cpu.{json,md}``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

import pyfastent as pf
from pyfastent.compat import information_flow as flow

from _record import environment, write

EPS32 = float(np.finfo(np.float32).eps)


def roundoff_of_known_rank(rng, n, d, rank, centred_unit=False):
    """max |round-off eigenvalue| / (ε₃₂·λ_max) of a float32 linear kernel of rank ``rank``."""
    z = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) + (0 if centred_unit else 1.0)
    z = z.astype(np.float32)
    rank = min(rank + (not centred_unit), n, d)  # the offset adds the constant direction
    if centred_unit:
        z = z - z.mean(0)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        rank = min(rank, n - 1)
    lam = np.linalg.eigvalsh((z @ z.T).astype(np.float64))
    noise = np.sort(np.abs(lam))[: n - rank]
    return float(noise.max() / lam.max() / EPS32)


def rbf_roundoff(n, d, sigma, seed=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    k32, k64 = pf.gram(x, sigma=sigma), pf.gram(x.double(), sigma=sigma)
    e32 = np.linalg.eigvalsh(k32.double().numpy())
    e64 = np.linalg.eigvalsh(k64.numpy())
    return float(np.abs(e32 - e64).max() / e64.max() / EPS32)


def float32_entropy_error(alpha, n=449, d=3, sigma=0.75, seed=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    est = pf.Renyi(alpha=alpha, sigma=sigma)
    return float(est.entropy(x) - est.entropy(x.double()))


def clamp_effect(tokens_list, alpha=1.0):
    """max over prompts of |compat (clamped, its α = 2 shortcut) − native| in nats."""
    worst = 0.0
    for tokens in tokens_list:
        z = flow.normalize(tokens)
        ours = float(pf.prompt_entropy(tokens[None].double()[None], alpha=alpha, base=math.e)[0, 0])
        theirs = flow.compute_entropy(z[None], alpha, ["raw"])["raw"][0]
        worst = max(worst, abs(theirs - ours))
    return worst


def shortcut_effect(tokens):
    """|that code's α = 2 value − the trace-normalized one of the same clamped D × D matrix|, nats."""
    z = flow.normalize(tokens).numpy()
    k = np.maximum(z.T @ z, 0)
    theirs = flow.compute_entropy(torch.from_numpy(z)[None], 2, ["raw"])["raw"][0]
    assert abs(theirs + math.log((k * k).sum() / k.shape[0] ** 2)) < 1e-9
    return abs(theirs + math.log((k * k).sum() / np.trace(k) ** 2))


def main():
    rng = np.random.default_rng(0)
    roundoff = {
        "linear n=500 D=65536 rank 8": roundoff_of_known_rank(rng, 500, 65536, 8),
        "linear n=1000 D=16384 rank 50": roundoff_of_known_rank(rng, 1000, 16384, 50),
        "linear n=2000 D=32 rank 32": roundoff_of_known_rank(rng, 2000, 32, 32),
        "tokens n=2 D=768 (centred, unit rows)": max(roundoff_of_known_rank(rng, 2, 768, 2, True) for _ in range(50)),
        "tokens n=256 D=768 rank 8 (centred, unit rows)": roundoff_of_known_rank(rng, 256, 768, 8, True),
        "rbf n=449 D=3 sigma=0.75 (vs float64)": rbf_roundoff(449, 3, 0.75),
        "rbf n=2000 D=64 sigma=8 (vs float64)": rbf_roundoff(2000, 64, 8.0),
        "rbf n=500 D=256 sigma=4 (vs float64)": rbf_roundoff(500, 256, 4.0),
    }
    worst = max(roundoff.values())
    assert worst < pf.ops._torch_spectrum.ENTRY_ROUNDOFF, roundoff  # the floor lies above every measured case
    torch.manual_seed(0)
    two = torch.randn(200, 2, 768) * 3 + 1
    two_token = {a: float(pf.prompt_entropy(two, alpha=a).abs().max()) for a in (0.1, 0.25, 0.5)}
    assert max(two_token.values()) == 0.0
    errors = {a: float32_entropy_error(a) for a in (0.5, 1.01, 2.0, 3.0)}

    g = torch.Generator().manual_seed(1)
    def states(kind, n=64, d=48):
        if kind == "isotropic":
            return torch.randn(n, d, generator=g, dtype=torch.float64)
        if kind == "power-law":
            return torch.randn(n, d, generator=g, dtype=torch.float64) * torch.arange(1, d + 1) ** -1.0
        if kind == "low-rank":
            return torch.randn(n, 3, generator=g, dtype=torch.float64) @ torch.randn(3, d, generator=g,
                                                                                     dtype=torch.float64)
        return torch.randn(2, d, generator=g, dtype=torch.float64)  # two tokens
    clamp = {kind: clamp_effect([states(kind) for _ in range(20)])
             for kind in ("isotropic", "power-law", "low-rank", "two tokens")}
    assert abs(clamp["two tokens"] - math.log(2)) < 1e-9  # max(K, 0) of [[1, −1], [−1, 1]] is I: ln 2 instead of 0
    wide = [torch.randn(200, 24, generator=g, dtype=torch.float64) * torch.arange(1, 25) ** -0.7 for _ in range(10)]
    shortcut = max(shortcut_effect(w) for w in wide)

    record = {"environment": environment(), "entry_roundoff": pf.ops._torch_spectrum.ENTRY_ROUNDOFF,
              "roundoff_over_eps32_lambda_max": roundoff, "two_token_float32_bits": two_token,
              "float32_minus_float64_bits_n449_sigma0.75": errors,
              "compat_minus_native_nats": {**clamp, "alpha 2 shortcut alone, D x D side (200 tokens, D = 24)": shortcut}}
    lines = ["| float32 Gram matrix | round-off eigenvalue / (ε₃₂·λ_max) |", "|---|---|"]
    lines += [f"| {k} | {v:.3g} |" for k, v in roundoff.items()]
    lines += ["", f"Floor: max(N·ε₆₄, {pf.ops._torch_spectrum.ENTRY_ROUNDOFF}·ε_built)·λ_max. "
              f"Two float32 tokens (200 prompts, D = 768): max entropy {max(two_token.values())} bits at α = 0.1-0.5.",
              "", "| α | float32 − float64 entropy, bits (N = 449, σ = 0.75) |", "|---|---|"]
    lines += [f"| {a} | {v:+.2e} |" for a, v in errors.items()]
    lines += ["", "| states (20 prompts each) | max |that code − pf.prompt_entropy|, nats |", "|---|---|"]
    lines += [f"| {k} | {v:.3g} |" for k, v in record["compat_minus_native_nats"].items()]
    table = "\n".join(lines)
    print(table)
    write("bench_conventions_cpu", record, table)


if __name__ == "__main__":
    main()
