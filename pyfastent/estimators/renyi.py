"""Matrix-based Rényi α-entropy with tensor and multivariate kernels.

Sánchez Giraldo, Rao & Príncipe, "Measures of Entropy From Data Using
Infinitely Divisible Kernels" (2015); Wickstrøm et al., "Information Plane
Analysis of Deep Neural Networks via Matrix-Based Rényi's Entropy and Tensor
Kernels" (2019); Yu, Wickstrøm, Jenssen & Príncipe, "Understanding
Convolutional Neural Networks with Information Theory: An Initial
Exploration" (TNNLS 2020).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import torch

from pyfastent import _checks, ops
from pyfastent.estimators.base import Estimator, _base_suffix
from pyfastent.ops import spectral
from pyfastent.ops._torch_gram import permuted
from pyfastent.ops.deferred import Pending
from pyfastent.ops.gram import kernel_matrix, kernel_needs
from pyfastent.ops.kernels import _hadamard_normalized
from pyfastent.ops.operators import JointKernel
from pyfastent.ops.spectral import LanczosConfig
from pyfastent.variable import KERNELS
from pyfastent.widths import as_width_rule, channel_share


# "auto" decomposes exactly up to this many samples (an exact float64
# eigendecomposition at N = 4096 takes about 2.5 s on a 2-core machine) and
# estimates above it (benchmarks/results/bench_large_n_cpu.md).
EXACT_UP_TO = 4096
METHODS = ("auto", "exact", "lanczos")


@dataclass(frozen=True, eq=False)
class RenyiPayload:
    """A prepared Rényi variable, in one of three forms:

    - ``matrix``: its normalized Gram matrix [N, N] (trace 1), for exact
      spectra;
    - ``features`` of kind ``"rbf"`` or ``"linear"``: [N, D] rows whose
      kernel is the variable's (see ``pyfastent.ops.features.kernel_features``),
      for the randomized method, which never stores an N×N matrix;
    - ``codes``: [N] int64, for the delta kernel: its Gram matrix is never
      built, since a joint with it is block diagonal by code.

    ``sigma`` holds the RBF widths that built it (one per channel; empty for
    delta and linear kernels).
    """

    sigma: tuple
    matrix: torch.Tensor | None = None
    features: torch.Tensor | None = None
    kind: str = "rbf"
    codes: torch.Tensor | None = None


class Renyi(Estimator):
    """Matrix-based Rényi α-entropy of variables through their Gram matrices.

    S_α(A) = 1/(1−α) log Σ λ_i(A)^α with A the normalized Gram matrix
    (tr A = 1); the joint entropy of variables with Gram matrices A_1..A_k is
    S_α(A_1 ∘ … ∘ A_k / tr(A_1 ∘ … ∘ A_k)).

    Args:
        alpha: order α > 0; α = 1 is the von Neumann limit, computed exactly;
            α = 2 needs no eigendecomposition.
        sigma: RBF width for continuous variables: a positive number,
            ``"knn"`` (mean distance to the 10 nearest other samples),
            ``"silverman"``, ``"alignment"`` (needs ``labels``), or a rule
            from ``pyfastent.widths``. Each variable gets its own σ from the
            rule. Papers writing exp(−d²/σ²) use our σ·√2.
        channel_sigma: the rule for each channel of a variable with
            ``channels=True`` (unless the ``Variable`` gives its own):
            ``"median"`` (the default: the median distance between distinct
            samples, which sparse ReLU maps do not pull to 0) or any rule
            ``sigma`` takes. Either way each of the C channels' widths is
            multiplied by √C (``pyfastent.widths.ChannelShare``), so that the
            Hadamard joint does not tend to the identity as C grows. Yu et
            al. (2020) chose one width per map for layers of 6 and 16 maps;
            at ResNet widths (64 to 512 maps) per-map widths alone put the
            joints at log N.
        kernel: ``"rbf"``, ``"linear"`` (the plain inner product x_i·x_j
            of the samples as given, not centred) or ``"delta"`` for
            continuous variables; discrete ones (integer/bool of shape (N,) or (N, k))
            always use the delta kernel unless a ``Variable`` overrides it.
        base: logarithm base of the results (2: bits).
        labels: (N,) class labels, for ``sigma="alignment"``.
        method: ``"exact"`` (all eigenvalues, float64), ``"lanczos"``
            (deflated stochastic Lanczos quadrature: O(N²) per product, and
            no N×N matrix stored when it would not fit; the results are
            ``pyfastent.Estimate`` floats with a ``stderr``) or ``"auto"``:
            exact up to N = ``EXACT_UP_TO`` (4096) samples, randomized above.
            α = 2 is always exact (a Frobenius norm, summed tile by tile
            for large N).
        seed: seed of the randomized method's probes: the same seed, the
            same estimate (up to BLAS round-off). Every estimate of one estimator uses the same
            probes, so the errors of the terms of an MI partly cancel.
        lanczos: a ``pyfastent.ops.spectral.LanczosConfig`` to change the
            randomized method's probes, steps and deflation.
        distributed: split the rows of each N×N kernel of the randomized
            method across the ranks of the default ``torch.distributed``
            process group, so N grows with the number of GPUs (see
            ``pyfastent.distributed``). Every rank must make the same calls
            on the same data. Without a process group it changes nothing;
            exact spectra (``method="auto"`` up to ``EXACT_UP_TO``) are
            computed by every rank.

    Gram matrices are built in the data's precision (float32 or float64);
    eigenvalues are always computed in float64. A joint that contains a
    discrete (delta-kernel) variable is block diagonal once the samples are
    grouped by its value: its spectrum is the union of the blocks', C classes
    cost ~N³/C² instead of N³, and the entropy of discrete variables alone
    is their plug-in entropy, with no matrix at all.
    """

    def __init__(self, alpha: float = 1.01, sigma="knn", kernel: str = "rbf", base: float = 2, labels=None,
                 method: str = "auto", seed: int = 0, lanczos: LanczosConfig | None = None,
                 distributed: bool = False, channel_sigma="median"):
        super().__init__(base)
        self.alpha = _checks.alpha_order(alpha)
        self.kernel = _checks.choice("kernel", kernel, KERNELS)
        self.sigma = as_width_rule(sigma, labels)
        self.channel_sigma = as_width_rule(channel_sigma, labels)
        self.method = _checks.choice("method", method, METHODS)
        if lanczos is not None and not isinstance(lanczos, LanczosConfig):
            raise ValueError(f"lanczos must be a pyfastent.ops.spectral.LanczosConfig, got {lanczos!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if not isinstance(distributed, bool):
            raise ValueError(f"distributed must be True or False, got {distributed!r}")
        if distributed and self.method == "exact":
            raise ValueError("distributed=True splits the randomized method's products; method='exact' has none: "
                             "use method='lanczos' or 'auto'")
        self.lanczos = replace(lanczos or LanczosConfig(), seed=seed, distributed=distributed)

    @property
    def distributed(self) -> bool:
        """Whether the randomized method's kernels are split across ranks."""
        return self.lanczos.distributed

    def __repr__(self):
        return (f"Renyi(alpha={self.alpha}, sigma={self.sigma!r}, kernel={self.kernel!r}, base={self.base}, "
                f"method={self.method!r}, lanczos={self.lanczos!r}, channel_sigma={self.channel_sigma!r})")

    def reuse_options(self):
        return (Renyi, self.alpha, self.sigma, self.kernel, float(self.base), self.method, self.lanczos,
                self.channel_sigma)

    @property
    def label(self) -> str:
        width = self.sigma.label if self.kernel == "rbf" else self.kernel
        method = "" if self.method == "auto" else f",{self.method}"
        return f"renyi(a={self.alpha:g},{width}{method}{_base_suffix(self.base)})"

    def exact_for(self, n: int) -> bool:
        """Whether variables of n samples are decomposed exactly (stored N×N
        Gram matrices) rather than by the randomized method."""
        return self.method == "exact" or (self.method == "auto" and n <= EXACT_UP_TO)

    def needs(self, var, rows, partners=None):
        """The inner products of the rows in their precision (exact
        spectra), per-channel distances (``channels=True``), the features
        (the randomized method) or the codes (delta kernel)."""
        kernel = ops.resolve_kernel(var, rows.discrete, self.kernel)
        return kernel_needs(kernel, self._rule(var, rows.channels), rows, self.exact_for(rows.n), var.channels)

    def _rule(self, var, channels: int | None):
        """The variable's width rule; for each of C channels, the channel
        rule's share (√C times wider)."""
        if var.channels:
            return channel_share(var.sigma or self.channel_sigma, channels)
        return var.sigma or self.sigma

    def _prepare(self, var, reduction, name):
        kernel = ops.resolve_kernel(var, reduction.discrete, self.kernel)
        if kernel == "delta":
            return RenyiPayload((), codes=reduction.codes)
        rule = self._rule(var, reduction.channels)
        if self.exact_for(reduction.n):
            matrix, sigma = kernel_matrix(reduction, kernel, rule, var.channels)
            return RenyiPayload(sigma, matrix=matrix)
        features, kind, sigma = reduction.features[(kernel, rule)]
        return RenyiPayload(sigma, features=features, kind=kind)

    def dpi_slack(self, value):
        """1e-4 bits: DESIGN.md's accuracy target for float32 activations
        (their Gram matrices are float32; spectra are float64)."""
        return 1e-4 * math.log(2.0) / self._ln_base

    def _saturation_advice(self, payloads):
        sigmas = [s for p in payloads for s in p.sigma]
        if not sigmas:
            return "The variables take (nearly) N distinct values: their delta kernels cannot tell samples apart."
        shown = ", ".join(f"{s:.3g}" for s in sigmas[:8]) + (", …" if len(sigmas) > 8 else "")
        return (f"The Gram matrix is close to the identity: its RBF widths (σ = {shown}) are far below the "
                "distances between samples. Use a wider kernel: a number on the scale of the data's distances, "
                "sigma='silverman', or fewer dimensions.")

    def _permute(self, payload, index):
        def take(t):
            return None if t is None else t.index_select(0, index.to(t.device))

        matrix = None if payload.matrix is None else permuted(payload.matrix, index)
        return replace(payload, matrix=matrix, features=take(payload.features), codes=take(payload.codes))

    def _defer_joint_nats(self, payloads, batch):
        """Exact spectra go to ``batch`` (the joint matrix, or its class
        blocks when delta-kernel variables are in the joint); plug-in
        entropies, α = 2 and randomized estimates are computed at once."""
        held = [t for p in payloads for t in (p.matrix, p.features, p.codes) if t is not None]
        if len({t.device for t in held}) > 1:
            raise ValueError("variables must be on one device, got " + ", ".join(sorted({str(t.device) for t in held})))
        n = held[0].shape[0]
        codes = [p.codes for p in payloads if p.codes is not None]
        groups = spectral.groups_of(codes) if codes else None
        rest = [p for p in payloads if p.codes is None]
        if not rest:
            return Pending.done(spectral.plugin_renyi_nats(groups, n, self.alpha))
        if rest[0].matrix is not None:
            joint = rest[0].matrix if len(rest) == 1 else _hadamard_normalized([p.matrix for p in rest], "auto")
            return spectral.defer_exact_renyi_nats(joint, self.alpha, groups, batch)
        rbf = [p.features for p in rest if p.kind == "rbf"]
        dtype = functools.reduce(torch.promote_types, [p.features.dtype for p in rest])
        kernel = JointKernel(torch.cat([f.to(dtype) for f in rbf], dim=1) if rbf else None,
                             [p.features.to(dtype) for p in rest if p.kind == "linear"], n)
        return Pending.done(spectral.randomized_renyi_nats(kernel, self.alpha, groups, self.lanczos))
