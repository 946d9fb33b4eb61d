"""The kernel and entropy functions of the tensor-kernel paper's code
(Wickstrøm, Løkse, Kampffmeyer, Yu, Príncipe & Jenssen, "Information Plane
Analysis of Deep Neural Networks via Matrix-Based Rényi's Entropy and Tensor
Kernels"; github.com/Wickstrom/InformationTheoryExperiment,
small_test/MI_MNIST_test.py and python/network.py), on pyfastent.

They were methods of the ``CNN`` / ``Network`` classes; here they are
functions with the same arguments, without ``self``. Entropies are in bits;
kernels are trace-normalized, as there.

Conventions (theirs, kept): the kernel is exp(−d²/σ²), our RBF with width
σ/√2; ``dist_mat`` divides the distances by their maximum, so a fixed σ is
relative to the largest distance; the automatic σ is the mean of the first
``n_n`` entries of each sorted row of that matrix, the zero self-distance
included. Differences: eigenvalues below round-off (N·ε·λ_max) count as 0
and a matrix that is not positive semidefinite is a ValueError, where the
original sums ``|λ|^α`` over all eigenvalues (the same for Gram matrices); α = 1
gives the von Neumann limit instead of dividing by zero.
"""
from __future__ import annotations

import math

import torch

from pyfastent import _checks, ops


def dist_mat(x, y=None):
    """Pairwise Euclidean distances of the rows of x divided by their maximum."""
    t = _checks.as_tensor("x", x)
    d = torch.cdist(t.reshape(t.shape[0], -1).double(), t.reshape(t.shape[0], -1).double())
    return (d / d.max()).to(t.dtype if t.is_floating_point() else torch.float64)


def calc_kernel(x, n_n, sigma=None):
    """exp(−(d/d_max)²/σ²) / trace, for x of shape (N, D)."""
    t = _checks.as_tensor("x", x)
    flat = t.reshape(t.shape[0], -1)
    rel = dist_mat(flat)
    if sigma is None:
        n_n = _checks.positive_int("n_n", n_n)
        sigma = float(torch.sort(rel, dim=1).values[:, :n_n].mean())
    sigma = _checks.positive_number("sigma", float(sigma))
    d_max = float(torch.cdist(flat.double(), flat.double()).max())
    # exp(−(d/d_max)²/σ²) is the RBF exp(−d²/(2s²)) with s = σ·d_max/√2.
    return ops.gram(flat.to(rel.dtype), sigma=sigma * d_max / math.sqrt(2), backend="torch")


def kernel_mat(x, n_n, sigma=None):
    """``calc_kernel`` of x with every trailing dimension flattened (the tensor kernel)."""
    return calc_kernel(x, n_n, sigma=sigma)


def entropy(x, n_n, alpha, sigma=None):
    """S_α of a trace-normalized kernel matrix x, in bits; n_n and sigma are unused, as in the original."""
    return torch.tensor(ops.renyi_entropy_from_gram(x, alpha), dtype=torch.float64)


def j_entropy(x, y, n_n, alpha, sigma=None):
    """S_α of x∘y / tr(x∘y), in bits: the joint entropy of two kernel matrices."""
    joint = ops.hadamard_normalized([_checks.as_tensor("x", x), _checks.as_tensor("y", y)], backend="torch")
    return torch.tensor(ops.renyi_entropy_from_gram(joint, alpha), dtype=torch.float64)
