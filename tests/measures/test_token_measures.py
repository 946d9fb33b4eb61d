"""Token-level measures (pyfastent.token_measures) against independent
float64 NumPy transcriptions of their definitions, and the drop-in for the
"Layer by Layer" code against the values that code computed
(tests/fixtures/representation_values.json)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import pyfastent as pf
from pyfastent.compat import information_flow as flow

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "representation_values.json").read_text())


# ---- independent references ---------------------------------------------------------------

def ref_prompt_nats(tokens, alpha):
    """S_α in nats of one sequence's tokens [n, D]: centred over the tokens,
    unit rows, linear kernel on the token side, exact trace."""
    z = np.asarray(tokens, dtype=np.float64)
    z = z - z.mean(0)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    z = np.where(norms > 0, z / np.where(norms > 0, norms, 1), 0)
    k = z @ z.T
    if np.trace(k) <= 0:
        return 0.0
    lam = np.linalg.eigvalsh(k / np.trace(k))
    lam = lam[lam > 1e-15]
    if alpha == 1:
        return float(-(lam * np.log(lam)).sum())
    return float(np.log((lam**alpha).sum()) / (1 - alpha))


def ref_logdet_nats(tokens, ridge):
    """(1/n) ln det(Z̃ Z̃ᵀ + ridge·I), each token centred over its features."""
    z = np.asarray(tokens, dtype=np.float64)
    z = z - z.mean(1, keepdims=True)
    sign, value = np.linalg.slogdet(z @ z.T + ridge * np.eye(len(z)))
    assert sign > 0
    return value / len(z)


def padded_batch(seed, lengths, t, d, left=False):
    """States [B, T, D] with junk in the padded positions, and the mask."""
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(len(lengths), t, d, generator=g, dtype=torch.float64) * 3 + 1
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    for b, n in enumerate(lengths):
        if left:
            mask[b, t - n:] = 1
        else:
            mask[b, :n] = 1
    return states, mask


def real_tokens(states, mask, b):
    return states[b][mask[b].bool()].numpy()


# ---- native measures ------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [1.0, 1.01, 2.0, 0.5])
@pytest.mark.parametrize("left", [False, True])
def test_prompt_entropy_masked_equals_reference_and_unpadded(alpha, left):
    lengths = [3, 17, 9, 24, 24, 2]
    states, mask = padded_batch(1, lengths, 24, 16, left)
    got = pf.prompt_entropy(states, mask, alpha=alpha, base=math.e)
    for b in range(len(lengths)):
        tokens = real_tokens(states, mask, b)
        assert float(got[b]) == pytest.approx(ref_prompt_nats(tokens, alpha), abs=1e-10)
        alone = pf.prompt_entropy(torch.from_numpy(tokens)[None], alpha=alpha, base=math.e)
        assert float(alone[0]) == pytest.approx(float(got[b]), abs=1e-10)


def test_prompt_entropy_in_bits_by_default():
    states, mask = padded_batch(2, [5, 8], 8, 6)
    assert torch.allclose(pf.prompt_entropy(states, mask), pf.prompt_entropy(states, mask, base=math.e) / math.log(2),
                          atol=1e-12)


def test_layered_states_equal_per_layer_calls_and_lists():
    lengths = [4, 11, 7]
    layers = [padded_batch(10 + i, lengths, 12, 8) for i in range(3)]
    mask = layers[0][1]
    stacked = torch.stack([s for s, _ in layers])  # [L, B, T, D]
    together = pf.prompt_entropy(stacked, mask, alpha=1.01)
    listed = pf.prompt_entropy([s for s, _ in layers], mask, alpha=1.01)
    assert together.shape == (3, 3)
    for i, (s, _) in enumerate(layers):
        assert torch.allclose(together[i], pf.prompt_entropy(s, mask, alpha=1.01), atol=1e-12)
    assert torch.allclose(together, listed, atol=0)
    ranks = pf.effective_rank(stacked, mask)
    assert torch.allclose(ranks[1], pf.effective_rank(layers[1][0], mask), atol=1e-10)


@pytest.mark.parametrize("alpha", [1.0, 1.5])
def test_both_sides_of_the_gram_give_the_same_entropy(alpha):
    """More tokens than dimensions: the D × D side; the reference works on
    the tokens × tokens side."""
    states, mask = padded_batch(3, [40, 23], 40, 8)
    got = pf.prompt_entropy(states, mask, alpha=alpha, base=math.e)
    for b in range(2):
        assert float(got[b]) == pytest.approx(ref_prompt_nats(real_tokens(states, mask, b), alpha), abs=1e-10)


def test_alpha_two_on_the_feature_side_uses_the_exact_trace():
    states, mask = padded_batch(4, [50], 50, 6)
    z = real_tokens(states, mask, 0)
    z = z - z.mean(0)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    k = z.T @ z  # D × D
    expected = -math.log((k**2).sum() / np.trace(k) ** 2)
    assert float(pf.prompt_entropy(states, mask, alpha=2, base=math.e)[0]) == pytest.approx(expected, abs=1e-11)


def test_one_real_token_has_entropy_zero_in_every_normalization():
    states, mask = padded_batch(5, [1, 6], 6, 4)
    for norm in ("raw", "logN", "logD", "maxEntropy", "logNlogD"):
        got = pf.prompt_entropy(states, mask, normalization=norm)
        assert float(got[0]) == 0.0
        assert torch.isfinite(got).all()
    assert float(pf.effective_rank(states, mask)[0]) == 1.0


def test_normalizations_divide_by_natural_logs_of_the_counts():
    states, mask = padded_batch(6, [5, 30], 30, 12)
    nats = pf.prompt_entropy(states, mask, base=math.e)
    n = torch.tensor([5.0, 30.0], dtype=torch.float64).log()
    d = math.log(12)
    cases = {"logN": n, "logD": torch.full((2,), d, dtype=torch.float64),
             "maxEntropy": torch.minimum(n, torch.tensor(d, dtype=torch.float64)), "logNlogD": n * d}
    for norm, denominator in cases.items():
        assert torch.allclose(pf.prompt_entropy(states, mask, normalization=norm), nats / denominator, atol=1e-12)


def test_effective_rank_of_orthogonal_tokens_is_their_number():
    """k centred unit rows spanning k − 1 orthogonal directions with equal
    weight: a simplex, whose kernel has k − 1 equal eigenvalues."""
    k = 5
    simplex = torch.eye(k, dtype=torch.float64) - 1.0 / k  # centred rows of the identity
    states = torch.cat([simplex, torch.zeros(k, 3, dtype=torch.float64)], dim=1)[None]  # [1, k, k + 3]
    assert float(pf.effective_rank(states)[0]) == pytest.approx(k - 1, abs=1e-10)


def test_exclude_leaves_special_tokens_out():
    states, mask = padded_batch(7, [6, 9], 9, 5)
    special = torch.zeros_like(mask)
    special[:, 0] = 1
    got = pf.prompt_entropy(states, mask, exclude=special)
    for b in range(2):
        tokens = real_tokens(states, mask, b)[1:]
        assert float(got[b]) * math.log(2) == pytest.approx(ref_prompt_nats(tokens, 1.0), abs=1e-10)


def test_dataset_entropy_pools_raw_states_then_normalizes():
    lengths = [4, 9, 7, 12, 3]
    states, mask = padded_batch(8, lengths, 12, 6)
    pooled = np.stack([real_tokens(states, mask, b).mean(0) for b in range(len(lengths))])
    for alpha in (1.0, 2.0):
        got = float(pf.dataset_entropy(states, mask, alpha=alpha, base=math.e))
        assert got == pytest.approx(ref_prompt_nats(pooled, alpha), abs=1e-10)
    layered = pf.dataset_entropy(torch.stack([states, 2 * states + 1]), mask)
    assert layered.shape == (2,)
    assert float(layered[1]) == pytest.approx(float(pf.dataset_entropy(2 * states + 1, mask)), abs=1e-12)


@pytest.mark.parametrize("lengths", [[3, 14, 8], [20, 20]])
def test_token_logdet_matches_slogdet(lengths):
    states, mask = padded_batch(9, lengths, max(lengths), 10)
    got = pf.token_logdet(states, mask, base=math.e)
    for b in range(len(lengths)):
        assert float(got[b]) == pytest.approx(ref_logdet_nats(real_tokens(states, mask, b), 1e-3), abs=1e-9)
    assert torch.allclose(pf.token_logdet(states, mask), got / math.log(2), atol=1e-12)


def ref_pooled_unit_rows(states):
    pooled = np.asarray(states, dtype=np.float64).mean(1)
    pooled = pooled - pooled.mean(0)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def test_dime_is_the_mean_permuted_joint_entropy_minus_the_aligned_one():
    """Four sequences: the exact expectation over all 24 permutations, which
    the seeded random permutations estimate within their standard error."""
    import itertools

    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 5, 6, generator=g, dtype=torch.float64)
    b = a + 0.3 * torch.randn(4, 5, 6, generator=g, dtype=torch.float64)
    za, zb = ref_pooled_unit_rows(a), ref_pooled_unit_rows(b)
    ka, kb = za @ za.T, zb @ zb.T

    def joint(perm):
        kp = kb[np.ix_(perm, perm)]
        return ref_prompt_nats_of_kernel(ka * kp)

    values = np.array([joint(list(p)) for p in itertools.permutations(range(4))])
    exact = values.mean() - joint([0, 1, 2, 3])
    draws = 3000
    got = float(pf.dime(a, b, permutations=draws, seed=5, base=math.e))
    assert abs(got - exact) < 4 * values.std() / math.sqrt(draws) + 1e-12
    assert got == float(pf.dime(a, b, permutations=draws, seed=5, base=math.e))  # seeded


def ref_prompt_nats_of_kernel(k, alpha=1.0):
    lam = np.linalg.eigvalsh(k / np.trace(k))
    lam = lam[lam > 1e-15]
    return float(-(lam * np.log(lam)).sum())


@pytest.mark.parametrize("call", [
    lambda: pf.prompt_entropy(torch.randn(2, 3)),
    lambda: pf.prompt_entropy(torch.randn(2, 3, 4), torch.zeros(2, 3)),
    lambda: pf.prompt_entropy(torch.randn(2, 3, 4), torch.ones(2, 4)),
    lambda: pf.prompt_entropy(torch.randn(2, 3, 4), torch.full((2, 3), 2.0)),
    lambda: pf.prompt_entropy(torch.full((2, 3, 4), float("nan"))),
    lambda: pf.prompt_entropy(torch.randint(0, 5, (2, 3, 4))),
    lambda: pf.prompt_entropy(torch.randn(2, 3, 4), normalization="log2"),
    lambda: pf.prompt_entropy(torch.randn(2, 3, 4), alpha=0),
    lambda: pf.prompt_entropy([]),
    lambda: pf.prompt_entropy([torch.randn(2, 3, 4), torch.randn(2, 3, 5)]),
    lambda: pf.token_logdet(torch.randn(2, 3, 4), ridge=0),
    lambda: pf.dime(torch.randn(4, 3, 2), torch.randn(5, 3, 2)),
    lambda: pf.dime(torch.randn(4, 3, 2), torch.randn(4, 3, 2), permutations=0),
])
def test_bad_input_is_a_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_one_dimensional_states_cannot_be_normalized_by_log_d():
    with pytest.raises(ValueError, match="ln D"):
        pf.prompt_entropy(torch.randn(2, 5, 1), normalization="logD")


# ---- the drop-in for the "Layer by Layer" code -----------------------------------------------

def _fixture_prompts():
    scope = {"np": np}
    exec(FIXTURE["recipes"]["H1"]["code"], scope)  # noqa: S102 - the fixture's own NumPy recipe
    return [torch.from_numpy(p) for p in scope["prompts"]]  # each [L, n, D]


def _normalized_layers(prompt):
    return torch.stack([flow.normalize(layer) for layer in prompt])


ENTROPY_KINDS = ("prompt_entropy", "prompt_entropy_mean", "dataset_entropy")


@pytest.mark.parametrize("case", [c for c in FIXTURE["cases"] if c["kind"] in ENTROPY_KINDS], ids=lambda c: c["id"])
def test_information_flow_reproduces_that_codes_values(case):
    prompts = _fixture_prompts()
    alpha, norm = case["alpha"], case["normalization"]
    if case["kind"] == "prompt_entropy":
        got = flow.compute_entropy(_normalized_layers(prompts[case["prompt"]]), alpha, [norm])[norm]
    elif case["kind"] == "prompt_entropy_mean":
        each = [flow.compute_entropy(_normalized_layers(p), alpha, [norm])[norm] for p in prompts]
        got = np.mean(each, axis=0)
    else:
        pooled = torch.stack([_normalized_layers(p).mean(1) for p in prompts], dim=1)  # [L, prompts, D]
        got = flow.compute_entropy(pooled, alpha, [norm])[norm]
    assert np.allclose(got, case["values_per_layer"], rtol=0, atol=1e-9)


def test_information_flow_signatures_and_types():
    out = flow.compute_entropy(_normalized_layers(_fixture_prompts()[0]))
    assert list(out) == ["maxEntropy"] and isinstance(out["maxEntropy"], list)
    assert all(isinstance(v, float) for v in out["maxEntropy"])
    assert flow.entropy_normalization(2.0, "logN", math.e**2, 10) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mean of the rows"):
        flow.normalize(torch.ones(3, 4))


def test_native_measures_differ_from_that_code_only_by_its_clamp():
    """Where max(K, 0) changes nothing (all inner products of the normalized
    tokens positive) the native and compat prompt entropies agree."""
    g = torch.Generator().manual_seed(3)
    direction = torch.randn(1, 32, generator=g, dtype=torch.float64)
    tokens = torch.randn(12, 32, generator=g, dtype=torch.float64) * 0.1 + direction
    z = flow.normalize(tokens)
    # centring makes some inner products negative: the two conventions then part
    assert bool(((z @ z.T) < 0).any())
    clamped = flow.compute_entropy(z[None], 1, ["raw"])["raw"][0]
    native = float(pf.prompt_entropy(tokens[None], base=math.e)[0])
    assert abs(clamped - native) > 1e-3
