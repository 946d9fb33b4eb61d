"""LiDAR, DiME, InfoNCE and curvature: pyfastent's own measures against
float64 NumPy transcriptions of their definitions, and the drop-in for the
"Layer by Layer" code against the 86 value lists that code computed
(tests/fixtures/representation_values.json, its README)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import pyfastent as pf
from pyfastent.compat import information_flow as flow

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "representation_values.json").read_text())
VIEW_KINDS = ("lidar", "lidar_float64", "dime", "infonce", "curvature", "curvature_mean")


def recipe(name):
    scope = {"np": np}
    exec(FIXTURE["recipes"][name]["code"], scope)  # noqa: S102 - the fixture's own NumPy recipe
    return scope


def fixture_input(name):
    """The tensor ``hs`` the reference function got, built by the fixture's code."""
    spec = FIXTURE["inputs"][name]
    scope = {"np": np, "torch": torch, "normalize": flow.normalize, **recipe(spec["recipe"])}
    exec(spec["code"], scope)  # noqa: S102
    assert list(scope["hs"].shape) == spec["shape"]
    return scope["hs"]


def fixture_permutations(name):
    """The recorded torch.randperm draws of a DiME case, layer by layer."""
    return torch.tensor([[int(i) for i in p.split()] for p in FIXTURE["dime_permutations"][name]["perms"]])


@pytest.mark.parametrize("case", [c for c in FIXTURE["cases"] if c["kind"] in VIEW_KINDS], ids=lambda c: c["id"])
def test_information_flow_reproduces_that_codes_values(case):
    kind, norm = case["kind"], case["normalization"]
    default = torch.get_default_dtype()
    try:
        if kind == "lidar_float64":
            torch.set_default_dtype(torch.float64)
        if kind in ("lidar", "lidar_float64"):
            got = flow.compute_lidar(fixture_input(case["input"]), case["alpha"], [norm])[norm]
        elif kind == "dime":
            torch.manual_seed(case["torch_seed"])
            got = flow.compute_dime(fixture_input(case["input"]), case["alpha"], [norm])[norm]
        elif kind == "infonce":
            got = flow.compute_infonce(fixture_input(case["input"]), case["temperature"])[norm]
        elif kind == "curvature":
            got = flow.compute_curvature(fixture_input(case["input"]), case["k"])[norm]
        else:
            prompts = [f"C1.prompt{i}" for i in range(3)]
            got = np.mean([flow.compute_curvature(fixture_input(p), case["k"])[norm] for p in prompts], axis=0)
    finally:
        torch.set_default_dtype(default)
    tolerance = 1e-5 if kind == "lidar" else 1e-9
    assert np.allclose(got, case["values_per_layer"], rtol=0, atol=tolerance)


def test_compat_dime_draws_the_recorded_permutations():
    case = next(c for c in FIXTURE["cases"] if c["kind"] == "dime" and c["input"] == "A1.views2")
    torch.manual_seed(case["torch_seed"])
    flow.compute_dime(fixture_input("A1.views2"), 1, ["raw"])
    after_call = torch.get_rng_state()
    torch.manual_seed(case["torch_seed"])
    recorded = fixture_permutations("A1.views2")  # [10·L, n]
    drawn = torch.stack([torch.randperm(recorded.shape[1]) for _ in range(recorded.shape[0])])
    assert torch.equal(drawn, recorded)
    assert torch.equal(torch.get_rng_state(), after_call)  # the call drew exactly these, nothing more


def test_compat_curvature_is_a_number_where_that_code_gives_nan():
    h = torch.nn.functional.normalize(torch.randn(1, 5, 8, dtype=torch.float64), dim=-1)
    h[0, 3] = h[0, 2]  # a repeated state: a rounded cosine may exceed 1
    assert all(math.isfinite(v) for v in flow.compute_curvature(h, 1)["raw"])


# ---- pyfastent's own measures against float64 references --------------------------------------

def ref_lidar_nats(x, alpha, delta=1e-4):
    """x [B, V, D] float64: S_α of M / tr M, M = S_w^-1/2 S_b S_w^-1/2, by a symmetric square root."""
    b, v, d = x.shape
    mu_i = x.mean(1)
    mu = mu_i.mean(0)
    sb = (mu_i - mu).T @ (mu_i - mu) / b
    r = (x - mu_i[:, None]).reshape(-1, d)
    sw = r.T @ r / (b * v) + delta * np.eye(d)
    w, u = np.linalg.eigh(sw)
    root = u @ np.diag(w**-0.5) @ u.T
    lam = np.linalg.eigvalsh(root @ sb @ root)
    lam = lam[lam > 1e-12 * lam.max()]
    lam = lam / lam.sum()
    if alpha == 1:
        return float(-(lam * np.log(lam)).sum())
    return float(np.log((lam**alpha).sum()) / (1 - alpha))


def views_of(seed, layers=2, b=12, t=6, d=5, v=3, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(layers, b, 1, d, generator=g, dtype=torch.float64)
    return [centre + spread * torch.randn(layers, b, t, d, generator=g, dtype=torch.float64) for _ in range(v)]


@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("shape", [(12, 5), (4, 9)])  # more prompts than dimensions, and fewer
def test_lidar_equals_the_lda_matrix_entropy(alpha, shape):
    b, d = shape
    views = views_of(1, b=b, d=d)
    got = pf.lidar(views, alpha=alpha, base=math.e)
    pooled = torch.stack([v.mean(2) for v in views], dim=2).numpy()  # [L, B, V, D]
    for layer in range(2):
        assert float(got[layer]) == pytest.approx(ref_lidar_nats(pooled[layer], alpha), abs=1e-9)
    assert float(pf.lidar(views, alpha=1.0)[0]) == pytest.approx(ref_lidar_nats(pooled[0], 1) / math.log(2))


def test_lidar_is_invariant_to_invertible_linear_maps_of_the_features():
    views = views_of(2, d=4)
    g = torch.Generator().manual_seed(9)
    mixing = torch.randn(4, 4, generator=g, dtype=torch.float64) + 3 * torch.eye(4, dtype=torch.float64)
    # δ·I is not invariant: make it negligible against the scatters
    assert torch.allclose(pf.lidar(views, delta=1e-12), pf.lidar([v @ mixing for v in views], delta=1e-12), atol=1e-6)


def test_lidar_of_views_with_one_mean_is_zero():
    views = views_of(3)
    same = views[0].mean(1, keepdim=True).expand_as(views[0])
    assert pf.lidar([views[0], views[1]], alpha=1.0).shape == (2,)
    assert float(pf.lidar([same[:, :1].expand(2, 12, 6, 5)] * 2).abs().max()) == 0.0


def ref_infonce(a, b, tau):
    """SimCLR's NT-Xent loss in nats of pooled views a, b [B, D], L2-normalized."""
    z = np.concatenate([a, b])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    s = z @ z.T / tau
    n = len(a)
    total = 0.0
    for i in range(2 * n):
        others = [j for j in range(2 * n) if j != i]
        total += -(s[i, (i + n) % (2 * n)] - np.log(np.exp(s[i, others]).sum()))
    return total / (2 * n)


def test_infonce_is_simclrs_loss_on_normalized_views():
    a, b = views_of(4, v=2, spread=0.5)
    got = pf.infonce(a, b, temperature=0.2)
    for layer in range(2):
        ref = ref_infonce(a[layer].mean(1).numpy(), b[layer].mean(1).numpy(), 0.2)
        assert float(got[layer]) == pytest.approx(ref, abs=1e-10)
    # identical views of orthogonal prompts: the loss is its floor, the bound ln(2B − 1) − loss its maximum
    eye = torch.eye(6, dtype=torch.float64)[:, None, :].repeat(1, 2, 1)  # 6 prompts, 2 tokens, D = 6
    floor = float(pf.infonce(eye, eye, temperature=0.1))
    assert floor == pytest.approx(-math.log(math.exp(10) / (math.exp(10) + 10)), abs=1e-12)


def test_curvature_of_known_trajectories():
    t = torch.arange(12, dtype=torch.float64)[:, None]
    line = t * torch.tensor([[1.0, 2.0, -1.0]], dtype=torch.float64)
    square = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0], [1, 0]], dtype=torch.float64)
    states = torch.zeros(2, 12, 3, dtype=torch.float64)
    states[0] = line
    states[1, :6, :2] = square
    mask = torch.zeros(2, 12, dtype=torch.long)
    mask[0] = 1
    mask[1, :6] = 1
    out = pf.curvature(states, mask, k=1)
    assert out.per_prompt[0, 0] == pytest.approx(0.0, abs=1e-12)
    assert out.per_prompt[0, 1] == pytest.approx(math.pi / 2, abs=1e-12)
    assert pf.curvature(states, mask, k=2).per_prompt[0, 1] == pytest.approx(math.pi, abs=1e-12)  # reversals
    short = pf.curvature(states, mask, k=5)  # the square's 6 tokens give no pair of steps 5 apart
    assert short.left_out == 1 and short.prompts.tolist() == [0]
    with pytest.raises(ValueError, match="k"):
        pf.curvature(states, mask, k=11)


def test_curvature_leaves_repeated_states_out_and_is_never_nan():
    x = torch.randn(1, 7, 4, dtype=torch.float64)
    x[0, 3] = x[0, 2]
    value = pf.curvature(x).mean
    assert math.isfinite(float(value))


@pytest.mark.parametrize("call", [
    lambda: pf.lidar([torch.randn(4, 3, 2)]),
    lambda: pf.lidar([torch.randn(4, 3, 2), torch.randn(5, 3, 2)]),
    lambda: pf.lidar([torch.randn(4, 3, 2)] * 2, delta=0),
    lambda: pf.lidar([torch.randn(1, 3, 2)] * 2),
    lambda: pf.infonce(torch.randn(4, 3, 2), torch.randn(4, 3, 2), temperature=0),
    lambda: pf.infonce(torch.zeros(4, 3, 2), torch.randn(4, 3, 2)),
    lambda: pf.infonce(torch.randn(4, 3, 2), torch.full((4, 3, 2), math.nan)),
    lambda: pf.curvature(torch.randn(4, 3, 2), k=0),
])
def test_bad_input_is_a_value_error(call):
    with pytest.raises(ValueError):
        call()
