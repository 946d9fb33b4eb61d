"""pyfastent against values computed by the published software itself
(repitl, the tensor-kernel and LogDet papers' code, CNN-TE, PyInform, dit) on
inputs defined by NumPy recipes: ``tests/fixtures/reference_values.json``, a
copy of the project's shared fixtures (README beside it). Both the core
estimators and the drop-in functions of ``pyfastent.compat`` are checked."""
import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

import pyfastent as pf
from pyfastent.compat import logdet as logdet_compat
from pyfastent.compat import repitl
from pyfastent.compat import wickstrom

FIXTURES = json.loads((Path(__file__).parents[1] / "fixtures" / "reference_values.json").read_text())
CASES = {c["id"]: c for c in FIXTURES["cases"]}
LN2 = math.log(2)


@lru_cache(maxsize=None)
def recipe(name):
    spec = FIXTURES["recipes"][name]
    scope = {"np": np}
    exec(spec["code"], scope)  # noqa: S102 - the fixtures' own NumPy recipes
    arrays = {k: scope[k] for k in spec["outputs"]}
    for k, fp in spec.get("fingerprint", {}).items():  # a changed NumPy random stream would show here
        assert list(arrays[k].shape) == fp["shape"] and float(np.sum(arrays[k])) == pytest.approx(fp["sum"], rel=1e-12)
    return {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}


def close(got, case):
    assert float(got) == pytest.approx(case["value"], abs=1e-9, rel=1e-12), case["id"]


def ids(prefix):
    return sorted(k for k in CASES if k.startswith(prefix))


def quantity(case_id):
    return case_id.rsplit("/", 1)[-1]


@pytest.mark.parametrize("case_id", ids("repitl/"))
def test_repitl(case_id):
    c = CASES[case_id]
    p, data = c["parameters"], recipe(c["inputs"]["recipe"])
    alpha = p["alpha"]
    if "L" in data:  # R2: X and labels L
        kx = repitl.gaussianKernel(data["X"], data["X"], p["sigma_X"])
        ky = (data["L"][:, None] == data["L"][None, :]).double()
        vx, vy = pf.Variable(data["X"], sigma=p["sigma_X"]), data["L"]
    else:
        kx = repitl.gaussianKernel(data["X"], data["X"], p["sigma_X"])
        ky = repitl.gaussianKernel(data["Y"], data["Y"], p["sigma_Y"])
        vx, vy = pf.Variable(data["X"], sigma=p["sigma_X"]), pf.Variable(data["Y"], sigma=p["sigma_Y"])
    est = pf.Renyi(alpha=alpha, base=math.e)
    q = quantity(case_id)
    if q == "H(X)":
        values = [repitl.matrixAlphaEntropy(kx, alpha), est.entropy(vx)]
    elif q in ("H(Y)", "H(L)"):
        values = [repitl.matrixAlphaEntropy(ky, alpha), est.entropy(vy)]
    elif q in ("H(X,Y)", "H(X,L)"):
        values = [repitl.matrixAlphaJointEntropy([kx, ky], alpha), est.entropy(vx, vy)]
    else:
        values = [repitl.matrixAlphaMutualInformation(kx, ky, alpha), pf.mutual_information(vx, vy, estimator=est)]
    for v in values:
        close(v, c)


@pytest.mark.parametrize("case_id", ids("wickstrom_small/"))
def test_tensor_kernel_paper_code(case_id):
    c = CASES[case_id]
    p, data = c["parameters"], recipe(c["inputs"]["recipe"])
    a, b = data[c["inputs"]["A"]], data[c["inputs"]["B"]]
    fixed = p["width_rule"] == "fixed"
    ka = wickstrom.kernel_mat(a, p["n_n"], p["sigma_A"] if fixed else None)
    kb = wickstrom.kernel_mat(b, p["n_n"], p["sigma_B"] if fixed else None)
    est = pf.Renyi(alpha=p["alpha"])  # bits
    va = pf.Variable(a, sigma=p["rbf_sigma_equivalent_A"])
    vb = pf.Variable(b, sigma=p["rbf_sigma_equivalent_B"])
    q = quantity(case_id)
    if q == "H(A)":
        values = [wickstrom.entropy(ka, p["n_n"], p["alpha"]), est.entropy(va)]
    elif q == "H(B)":
        values = [wickstrom.entropy(kb, p["n_n"], p["alpha"]), est.entropy(vb)]
    elif q == "H(A,B)":
        values = [wickstrom.j_entropy(ka, kb, p["n_n"], p["alpha"]), est.entropy(va, vb)]
    else:
        values = [wickstrom.entropy(ka, p["n_n"], p["alpha"]) + wickstrom.entropy(kb, p["n_n"], p["alpha"])
                  - wickstrom.j_entropy(ka, kb, p["n_n"], p["alpha"]), pf.mutual_information(va, vb, estimator=est)]
    for v in values:
        close(v, c)


@pytest.mark.parametrize("case_id", ids("wickstrom_network/"))
def test_tensor_kernel_network_code_von_neumann(case_id):
    c = CASES[case_id]
    p, data = c["parameters"], recipe(c["inputs"]["recipe"])
    va = pf.Variable(data[c["inputs"]["A"]], sigma=p["rbf_sigma_equivalent_A"])
    vb = pf.Variable(data[c["inputs"]["B"]], sigma=p["rbf_sigma_equivalent_B"])
    est = pf.Renyi(alpha=1.0)
    q = quantity(case_id)
    got = {"H(A)": lambda: est.entropy(va), "H(B)": lambda: est.entropy(vb), "H(A,B)": lambda: est.entropy(va, vb),
           "I(A;B)": lambda: pf.mutual_information(va, vb, estimator=est)}[q]()
    close(got, c)


@pytest.mark.parametrize("case_id", ids("logdet/"))
def test_logdet_paper_code(case_id):
    c = CASES[case_id]
    p, data = c["parameters"], recipe(c["inputs"]["recipe"])
    x, y, beta = data["X"], data["Y"], p["beta"]
    est = pf.LogDet(beta=beta, base=math.e)
    q = quantity(case_id)
    if q == "H(X)":
        values = [logdet_compat.LogDet(x, "cpu", "cov", beta), est.entropy(x)]
    elif q == "H(X,Y)":
        values = [logdet_compat.join("cpu", "cov", beta, x, y), est.entropy(x, y)]
    else:
        values = [logdet_compat.mi(x, y, "cpu", "cov", beta), pf.mutual_information(x, y, estimator=est)]
    for v in values:
        close(v, c)


@pytest.mark.parametrize("case_id", ids("te_"))
def test_transfer_entropy_codes(case_id):
    c = CASES[case_id]
    data = recipe(c["inputs"]["recipe"])
    source, target = data[c["inputs"]["source"]], data[c["inputs"]["target"]]
    close(pf.transfer_entropy(source, target, estimator=pf.Discrete(), k=c["parameters"]["k"]), c)


@pytest.mark.filterwarnings("ignore::pyfastent.SaturationWarning")  # XOR's table has 4 samples, all distinct
@pytest.mark.parametrize("case_id", ids("pid_mmi/"))
def test_pid_against_dit(case_id):
    c = CASES[case_id]
    dist = FIXTURES["distributions"][c["inputs"]["distribution"]]
    samples = torch.tensor([o for o, n in zip(dist["outcomes"], dist["counts"]) for _ in range(n)])
    r = pf.pid(samples[:, 2], [samples[:, 0], samples[:, 1]], estimator=pf.Discrete())
    got = {"redundancy": r.redundancy, "unique_S0": r.unique[0], "unique_S1": r.unique[1],
           "synergy": r.synergy}[quantity(case_id)]
    close(got, c)


def test_every_fixture_is_checked():
    prefixes = ("repitl/", "wickstrom_small/", "wickstrom_network/", "logdet/", "te_", "pid_mmi/")
    assert sum(len(ids(p)) for p in prefixes) == len(CASES) == 86


def test_compat_extras_against_independent_formulas():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    k = repitl.gaussianKernel(x, x, 1.5)
    lam = torch.linalg.eigvalsh(k / k.trace())
    assert float(repitl.vonNeumannEntropy(k)) == pytest.approx(float(-(lam * lam.log2()).sum()), abs=1e-10)
    assert float(repitl.frobeniusGIP(k)) == pytest.approx(float((lam**2).sum()), abs=1e-12)
    assert float(repitl.generalizedInformationPotential(k, 3.0)) == pytest.approx(float((lam**3).sum()), rel=1e-10)
    assert float(repitl.schattenNorm(k, 1.0)) == pytest.approx(float(k.trace()), rel=1e-10)  # PSD: nuclear = trace
    kx, ky = k, repitl.gaussianKernel(x, x, 3.0)
    # D_α(ρ‖ρ) = 0: the divergence of a normalized kernel from itself.
    assert float(repitl.matrixAlphaDivergence(kx, kx, kx, 2.0, normalize=True)) == pytest.approx(0.0, abs=1e-8)
    # Schatten-1 divergence: 1 − the nuclear norm of Kxy (0 for a normalized kernel against itself).
    assert float(repitl.schatten1Divergence(kx, kx, kx, normalize=True)) == pytest.approx(0.0, abs=1e-10)
    kxy = (kx @ ky / 400).numpy()  # not symmetric: singular values, not eigenvalues
    want = 1 - np.linalg.svd(kxy, compute_uv=False).sum()
    assert float(repitl.schatten1Divergence(kx, ky, kxy)) == pytest.approx(want, rel=1e-10)
    assert repitl.rowWiseKroneckerProduct(torch.ones(2, 3), torch.ones(2, 4)).shape == (2, 12)
    assert float(repitl.matrixAlphaConditionalEntropy(kx, ky, 1.01)) == pytest.approx(
        float(repitl.matrixAlphaJointEntropy([kx, ky], 1.01) - repitl.matrixAlphaEntropy(ky, 1.01)), abs=1e-12)
    with pytest.raises(ValueError, match="^K must be a square"):
        repitl.matrixAlphaEntropy(torch.ones(3, 4), 2)
    # LogDet 'pos' mode: ½ log det(I + β exp(R − 1)) from its definition.
    xc = x - x.mean(0)
    r = (xc.T @ xc) / xc.norm(dim=0).outer(xc.norm(dim=0))
    want = 0.5 * torch.logdet(torch.eye(3, dtype=torch.float64) + 2.0 * torch.exp(r - 1))
    assert float(logdet_compat.LogDet(x, "cpu", "pos", 2.0)) == pytest.approx(float(want), rel=1e-12)
    assert float(logdet_compat.mi(x, x[:, :2] ** 2, "cpu", "cov")) == pytest.approx(
        float(logdet_compat.mi(x, x[:, :2] ** 2, "cpu", "cov", beta=500)), rel=1e-12)  # β = 100·(3 + 2)
