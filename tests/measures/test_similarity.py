"""HSIC, CKA, minibatch CKA, mutual kNN and normalized MI: against the 86
values of tests/fixtures/similarity_values.json (a copy of the project's
shared fixtures: six packages and the textbook formulas, on NumPy recipes),
float64 references written here, and the properties each measure has."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import pyfastent as pf
from pyfastent import similarity

DATA = json.loads((Path(__file__).parents[1] / "fixtures" / "similarity_values.json").read_text())
TOL = 1e-10  # the fixture README's tolerance for a float64 implementation


def recipe(name: str) -> dict:
    scope = {"np": np}
    exec(DATA["recipes"][name]["code"], scope)
    return scope


def arrays(case: dict, scope: dict, key: str):
    return eval(case["inputs"][key], {}, scope)  # expressions such as A_layers[1] over the recipe's outputs


def scalar_cases() -> list:
    return [c for c in DATA["cases"] if not isinstance(c["value"], list)]


def matrix_cases() -> list:
    return [c for c in DATA["cases"] if isinstance(c["value"], list)]


def ours(case: dict, x, y) -> float:
    p = case["parameters"]
    sigma = (p["sigma_X"], p["sigma_Y"]) if p["kernel"] == "rbf" else None
    if p["estimator"] == "minibatch_unbiased":
        return pf.minibatch_cka(x, y, p["batch_size"], kernel=p["kernel"])
    debiased = p["estimator"] == "unbiased" or p.get("repsim_estimator") == "song" and p["measure"] == "hsic"
    measure = pf.cka if p["measure"] == "cka" else pf.hsic
    return measure(x, y, kernel=p["kernel"], sigma=sigma, debiased=debiased)


@pytest.mark.parametrize("case", scalar_cases(), ids=lambda c: c["id"])
def test_every_scalar_fixture(case):
    scope = recipe(case["inputs"]["recipe"])
    x, y = arrays(case, scope, "X"), arrays(case, scope, "Y")
    got = ours(case, x, y)
    want = case["value"]
    if case["parameters"].get("clamp"):  # pytorch-cka clamps to [0, 1]; pyfastent does not
        want_unclamped = pf.cka(x, y, debiased=True)
        assert want == pytest.approx(min(max(want_unclamped, 0.0), 1.0), abs=TOL)
        want = want_unclamped
    assert got == pytest.approx(want, abs=TOL * max(1.0, abs(want)))


@pytest.mark.parametrize("case", matrix_cases(), ids=lambda c: c["id"])
def test_every_layer_by_layer_fixture_is_minibatch_cka(case):
    """The three model-comparison packages compute minibatch CKA over their
    loader's batches (cka-pytorch's ε = 1e-4 moves values by ~1e-11)."""
    scope = recipe(case["inputs"]["recipe"])
    rows = [arrays({"inputs": {"e": e}}, scope, "e") for e in case["inputs"]["rows"]]
    cols = [arrays({"inputs": {"e": e}}, scope, "e") for e in case["inputs"]["cols"]]
    batch = case["parameters"]["batch_size"]
    got = np.array([[pf.minibatch_cka(a, b, batch) for b in cols] for a in rows])
    want = np.array(case["value"])
    if case["parameters"].get("clamp"):
        got = got.clip(0.0, 1.0)
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_the_width_rules_give_the_packages_sigmas():
    by_rule = {"repsim": "median", "ckatorch(threshold=1.0)": "kornblith", "ckatorch:": "kornblith"}
    checked = 0
    for case in scalar_cases():
        p = case["parameters"]
        if p["kernel"] != "rbf" or p.get("threshold", 1.0) != 1.0:
            continue
        rule = next(r for prefix, r in by_rule.items() if p["bandwidth_rule"].startswith(prefix))
        scope = recipe(case["inputs"]["recipe"])
        for key, sigma in (("X", p["sigma_X"]), ("Y", p["sigma_Y"])):
            x = torch.from_numpy(arrays(case, scope, key))
            sq = torch.cdist(x, x) ** 2
            assert similarity.width(key, sq, rule) == pytest.approx(sigma, rel=1e-9)
            checked += 1
    assert checked >= 10


def reference_hsic(k: np.ndarray, m: np.ndarray, debiased: bool) -> float:
    """Textbook float64 HSIC of two kernel matrices."""
    n = k.shape[0]
    if not debiased:
        h = np.eye(n) - 1.0 / n
        return float(np.trace(k @ h @ m @ h)) / (n - 1) ** 2
    k, m = k.copy(), m.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(m, 0)
    one = np.ones(n)
    return float(np.trace(k @ m) + (one @ k @ one) * (one @ m @ one) / ((n - 1) * (n - 2))
                 - 2.0 / (n - 2) * one @ k @ m @ one) / (n * (n - 3))


@pytest.mark.parametrize("debiased", [False, True])
def test_rbf_hsic_and_cka_against_a_textbook_reference(debiased):
    g = np.random.default_rng(0)
    x, y = g.normal(size=(50, 4)), g.normal(size=(50, 3))
    y[:, 0] += x[:, 0]

    def rbf(a, sigma):
        sq = ((a[:, None] - a[None]) ** 2).sum(-1)
        return np.exp(-sq / (2 * sigma ** 2))

    k, m = rbf(x, 1.3), rbf(y, 0.7)
    assert pf.hsic(x, y, kernel="rbf", sigma=(1.3, 0.7), debiased=debiased) == pytest.approx(
        reference_hsic(k, m, debiased), rel=1e-11)
    want = reference_hsic(k, m, debiased) / math.sqrt(reference_hsic(k, k, debiased) * reference_hsic(m, m, debiased))
    assert pf.cka(x, y, kernel="rbf", sigma=(1.3, 0.7), debiased=debiased) == pytest.approx(want, rel=1e-11)


def orthogonal(d: int, seed: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))[0]


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_is_invariant_to_rotation_scaling_and_translation(debiased):
    x = np.random.default_rng(1).normal(size=(80, 6))
    y = np.tanh(x @ np.random.default_rng(2).normal(size=(6, 5)))
    base = pf.cka(x, y, debiased=debiased)
    assert pf.cka(3.0 * x @ orthogonal(6, 3) + 5.0, y, debiased=debiased) == pytest.approx(base, abs=1e-12)
    assert pf.cka(x, x @ orthogonal(6, 4), debiased=debiased) == pytest.approx(1.0, abs=1e-12)


def test_rbf_cka_is_invariant_to_rotation_at_a_fixed_width():
    x = np.random.default_rng(5).normal(size=(60, 4))
    y = np.sin(x[:, :2])
    assert pf.cka(x @ orthogonal(4, 6), y, kernel="rbf", sigma=1.5) == pytest.approx(
        pf.cka(x, y, kernel="rbf", sigma=1.5), abs=1e-12)
    # The median rule is a function of the distances, which a rotation keeps.
    assert pf.cka(x @ orthogonal(4, 6), y, kernel="rbf") == pytest.approx(pf.cka(x, y, kernel="rbf"), abs=1e-12)


def test_debiased_cka_of_independent_draws_averages_to_zero():
    g = np.random.default_rng(7)
    values = [pf.cka(g.normal(size=(40, 5)), g.normal(size=(40, 5)), debiased=True) for _ in range(200)]
    assert abs(np.mean(values)) < 3 * np.std(values) / math.sqrt(len(values))
    biased = [pf.cka(g.normal(size=(40, 5)), g.normal(size=(40, 5))) for _ in range(20)]
    assert np.mean(biased) > 0.1  # the bias the debiased estimator removes


def test_minibatch_cka_of_one_batch_is_debiased_cka():
    x = np.random.default_rng(8).normal(size=(30, 4))
    y = x ** 2
    assert pf.minibatch_cka(x, y, 30) == pytest.approx(pf.cka(x, y, debiased=True), abs=1e-13)


def test_mutual_knn_against_a_brute_force_count():
    g = np.random.default_rng(9)
    x = g.normal(size=(40, 5))
    y = x + 0.3 * g.normal(size=(40, 5))
    for metric in ("cosine", "euclidean"):
        def knn(a):
            if metric == "cosine":
                a = a / np.linalg.norm(a, axis=1, keepdims=True)
                d = -(a @ a.T)
            else:
                d = ((a[:, None] - a[None]) ** 2).sum(-1)
            np.fill_diagonal(d, np.inf)
            return [set(np.argsort(row)[:5]) for row in d]

        want = np.mean([len(a & b) / 5 for a, b in zip(knn(x), knn(y))])
        assert pf.mutual_knn(x, y, k=5, metric=metric) == pytest.approx(want, abs=1e-12)
    assert pf.mutual_knn(x, 2 * x @ orthogonal(5, 1), k=5) == 1.0


def test_mutual_knn_of_independent_representations_is_near_chance():
    g = np.random.default_rng(10)
    values = [pf.mutual_knn(g.normal(size=(200, 8)), g.normal(size=(200, 8)), k=10) for _ in range(5)]
    assert np.mean(values) == pytest.approx(10 / 199, rel=0.25)


def test_normalized_mutual_information():
    labels = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(0))
    for norm in similarity.NORMALIZATIONS:
        assert pf.normalized_mutual_information(labels, labels, pf.Discrete(), norm) == pytest.approx(1.0, abs=1e-12)
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    hx, hy = pf.Renyi().entropy(x), pf.Renyi().entropy(x[:, :1])
    mi = pf.mutual_information(x, x[:, :1])
    assert pf.normalized_mutual_information(x, x[:, :1]) == pytest.approx(mi / math.sqrt(hx * hy), rel=1e-9)
    assert pf.normalized_mutual_information(x, x[:, :1], normalization="min") == pytest.approx(mi / min(hx, hy),
                                                                                              rel=1e-9)
    independent = pf.normalized_mutual_information(torch.randint(0, 2, (4000,)), torch.randint(0, 2, (4000,)),
                                                   pf.Discrete())
    assert abs(independent) < 0.01


@pytest.mark.parametrize("call, message", [
    (lambda: pf.cka(np.ones((10, 3)), np.random.rand(10, 3)), "x has HSIC .* with itself: it is constant"),
    (lambda: pf.cka(np.random.rand(3, 2), np.random.rand(3, 2), debiased=True), "x needs at least N = 4"),
    (lambda: pf.hsic(np.random.rand(10, 2), np.random.rand(9, 2)), "y has 9 samples but x has 10"),
    (lambda: pf.cka(np.array([[np.nan], [1.0], [2.0]]), np.random.rand(3, 1)), "x contains 1 non-finite"),
    (lambda: pf.cka(np.random.rand(5, 2), np.random.rand(5, 2), kernel="poly"), "kernel must be one of"),
    (lambda: pf.cka(np.random.rand(5, 2), np.random.rand(5, 2), kernel="rbf", sigma="silverman"),
     "sigma must be one of"),
    (lambda: pf.cka(np.random.rand(5, 2), np.random.rand(5, 2), kernel="rbf", sigma=-1.0), "width of x"),
    (lambda: pf.minibatch_cka(np.random.rand(10, 2), np.random.rand(10, 2), 8), "leaves a batch of 2 rows"),
    (lambda: pf.mutual_knn(np.random.rand(5, 2), np.random.rand(5, 2), k=5), "k must be below N = 5"),
    (lambda: pf.mutual_knn(np.zeros((5, 2)), np.random.rand(5, 2), k=2), "x has a sample of norm 0"),
    (lambda: pf.normalized_mutual_information(torch.zeros(20, dtype=torch.long), torch.arange(20) % 4, pf.Discrete()),
     "zero entropy"),
])
def test_bad_input_is_a_value_error_naming_it(call, message):
    with pytest.raises(ValueError, match=message):
        call()
