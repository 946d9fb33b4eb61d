"""``pyfastent reproduce``: every reproduction runs end to end (quick size)
and writes what it promises; each verdict rule gives the verdict its text
states on inputs built to land in each branch."""
import contextlib
import io
import math
import re

import numpy as np
import pytest
import torch

import pyfastent.reproduce as reproduce
from pyfastent import cli
from pyfastent.reproduce import cnn_pid, logdet, tensor_kernels, transfer_entropy
from pyfastent.reproduce._report import Report, spearman

pytestmark = pytest.mark.slow  # paper reproductions

pytest.importorskip("matplotlib")
pd = pytest.importorskip("pandas")

SECTIONS = ["## The paper's claim", "## The rule (fixed before the numbers)", "## Settings",
            "## What this run measured", "## Verdict: ", "## Pictures"]


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Each reproduction's quick run, once: name -> (output directory, what it printed)."""
    runs = {}

    def run(name):
        if name not in runs:
            out = tmp_path_factory.mktemp(name)
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                assert cli.main(["reproduce", name, "--quick", "--out", str(out), "--no-progress"]) == 0
            runs[name] = (out, printed.getvalue())
        return runs[name]
    return run


@pytest.mark.parametrize("name", list(reproduce.REPRODUCTIONS))
def test_quick_run_writes_report_csv_and_pictures(name, quick_runs):
    out, printed = quick_runs(name)
    text = (out / "report.md").read_text()
    positions = [text.index(s) for s in SECTIONS]
    assert positions == sorted(positions)  # the rule is stated before the numbers
    module = reproduce.module(name)
    assert module.CLAIM in text and module.RULE in text and module.PAPER in text
    verdict = re.search(r"## Verdict: \*\*(.+?)\*\*", text).group(1)
    assert verdict in ("supported", "not supported", "inconclusive")
    assert f"verdict: {verdict}" in printed
    table = pd.read_csv(out / "results.csv")
    assert len(table) > 0
    pictures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert pictures
    for picture in pictures:
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "size: quick" in text


def test_logdet_finds_the_planted_gaussian_dependence(quick_runs):
    """Pairs of coordinates with correlation ρ, d of them: I(X;Y) = −d/2·ln(1 − ρ²)
    nats. LogDet's β → ∞ limit is the sample covariance's Gaussian MI, so at
    β = 10⁵ and N = 2000 it lands within 10% of the planted value, and the
    verdict is the rule's "supported"."""
    out, _ = quick_runs("logdet")
    table = pd.read_csv(out / "results.csv")
    pairs = table[table["case"].str.match(r"^d=\d+$", na=False)]
    assert len(pairs) >= 3
    for _, row in pairs.iterrows():
        planted = -row["d"] / 2 * math.log(1 - row["rho"] ** 2)
        assert row["closed_form_nats"] == pytest.approx(planted, rel=1e-12)
        assert row["logdet_b100000"] == pytest.approx(planted, rel=0.10)
        assert row["logdet_b1"] < row["logdet_b100"] < row["logdet_b100000"]  # rising towards the limit in β
    assert "## Verdict: **supported**" in (out / "report.md").read_text()


def test_transfer_entropy_detects_its_planted_flow(quick_runs):
    """The power check copies a binary source with error 0.45: TE = 1 − H_b(0.45)
    bits, detected against the shuffled null whatever the verdict on the networks."""
    out, _ = quick_runs("transfer-entropy")
    text = (out / "report.md").read_text()
    found = re.search(r"a flow of ([\d.]+) bits \(closed form\) was estimated at ([\d.]+) bits against a null mean "
                      r"of ([\d.]+), p = (\d+\.\d+)", text)
    exact, value, null, p = map(float, found.groups())
    h = -(0.45 * math.log2(0.45) + 0.55 * math.log2(0.55))
    assert exact == pytest.approx(1 - h, abs=1e-4)
    assert value > null and p < 0.05


def test_list_names_every_reproduction(capsys):
    assert cli.main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in reproduce.REPRODUCTIONS:
        assert name in listed and reproduce.module(name).PAPER in listed


@pytest.mark.parametrize("argv, message", [
    (["reproduce"], "name the reproduction"),
    (["reproduce", "nope"], "unknown reproduction 'nope'"),
])
def test_bad_command_lines_get_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_name_and_verdict_are_value_errors():
    with pytest.raises(ValueError, match="name must be one of"):
        reproduce.module("tensor_kernels")
    with pytest.raises(ValueError, match="verdict must be one of"):
        Report("t", "p", "c", "r", "probably", "why")


@pytest.mark.parametrize("a, b, expected", [
    ([1, 2, 3, 4], [10, 20, 30, 40], 1.0),
    ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),
    ([1, 2, 3], [5, 5, 5], 0.0),
])
def test_spearman_exact_values(a, b, expected):
    assert spearman(a, b) == pytest.approx(expected, abs=1e-12)


def test_spearman_with_ties_is_pearson_of_average_ranks():
    a, b = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0], [2.0, 7.0, 1.0, 8.0, 2.0, 8.0, 1.0]

    def ranks(v):  # independent: average rank of each value among the sorted values
        s = sorted(v)
        return [np.mean([i for i, w in enumerate(s) if w == x]) for x in v]

    assert spearman(a, b) == pytest.approx(np.corrcoef(ranks(a), ranks(b))[0, 1], abs=1e-12)


# ---- the verdict rules, branch by branch ---------------------------------------

def _curve(model, estimator, layer, later, rise, drop, saturated=False):
    return {"model": model, "estimator": estimator, "layer": layer, "later": later, "saturated": saturated,
            "i_ty_first": 1.0, "i_ty_last": 1.0 + rise, "i_xt_max": 5.0, "i_xt_last": 5.0 - drop}


@pytest.mark.parametrize("rise, drop, saturated, verdict", [
    (0.2, 0.2, False, "supported"),
    (0.2, 0.0, False, "inconclusive"),
    (0.0, 0.2, False, "inconclusive"),
    (0.0, 0.0, False, "not supported"),
    (0.2, 0.2, True, "not supported"),  # a saturated curve counts as failing
])
def test_tensor_kernels_rule(rise, drop, saturated, verdict):
    curves = [_curve(m, e, layer, later, rise, drop, saturated)
              for m in ("mlp", "cnn") for e in ("knn", "alignment") for layer, later in (("a", False), ("b", True))]
    report = tensor_kernels._report(curves, {"mlp": 0.9, "cnn": 0.9}, [], None, {})
    assert report.verdict == verdict


@pytest.mark.parametrize("failed, verdict", [(1, "supported"), (3, "inconclusive"), (5, "not supported")])
def test_cnn_pid_rule(failed, verdict):
    violation = {"quantity": "i_xt", "earlier": "a", "later": "b", "size": 0.2}
    checks = [(1, 5, [violation] * failed), (2, 5, [])]  # 10 checks in all
    pid_rows = [{"epoch": 2, "layer": "relu1", "k": 2.0, "mutual_information": 1.0, "redundancy": 0.5,
                 "synergy": 0.1, "tradeoff": 0.4, "nonredundant": 0.5}]
    tests = [{"layer": "relu1", "dead_maps": 0, "quantity": "synergy", "value": 0.1, "null_mean": 0.1,
              "null_std": 0.01, "p": 0.5}]
    report = cnn_pid._report(checks, [("a", "b")], "sequential", pid_rows, tests, 0.9, [], None, {})
    passed = 1 - failed / 10
    assert report.verdict == verdict and f"{passed:.0%} of the data processing checks passed" in report.reason


def _gaussian_row(case, closed, values, sample, n=1000, d=2):
    row = {"case": case, "n": n, "d": d, "closed_form_nats": closed, "sample_closed_form_nats": sample,
           "renyi_knn_nats": 0.0, "renyi_saturated": False, "discrete_signs_nats": 0.0, "discrete_saturated": False}
    row.update({f"logdet_b{b:g}": v for b, v in zip(logdet.BETAS, values)})
    return row


@pytest.mark.parametrize("at_1e4, monotone, verdict", [
    (1.05, True, "supported"),
    (1.05, False, "inconclusive"),  # close, but not approaching the limit at every step
    (1.2, True, "inconclusive"),
    (1.5, True, "not supported"),
])
def test_logdet_rule(at_1e4, monotone, verdict):
    # The sample covariance's MI (the β → ∞ limit) sits at at_1e4; LogDet approaches it from below.
    values = [0.2, 0.5, 0.8, at_1e4 - 0.05, at_1e4 - 1e-4, at_1e4 - 1e-5]
    if not monotone:
        values[3] = at_1e4 + 0.5  # overshoots, then comes back
    rows = [_gaussian_row("a", 1.0, values, sample=at_1e4),
            _gaussian_row("high-dimensional", 1.0, [9.0] * 6, sample=math.nan, n=10, d=8)]  # N < 4d: never decides
    plane = {"trends": {"act1": (1.0, 2.0, 1.5)}}
    assert logdet._report(rows, plane, [], None, {}).verdict == verdict


def test_sample_gaussian_mi_matches_a_numpy_reference(rng):
    x = torch.randn(500, 3, generator=rng, dtype=torch.float64)
    y = 0.5 * x[:, :2] + torch.randn(500, 2, generator=rng, dtype=torch.float64)

    def logdet_cov(a):
        return np.linalg.slogdet(np.cov(a, rowvar=False, bias=True))[1]

    xy = np.hstack([x.numpy(), y.numpy()])
    expected = 0.5 * (logdet_cov(x.numpy()) + logdet_cov(y.numpy()) - logdet_cov(xy))
    assert logdet.sample_gaussian_mi(x, y) == pytest.approx(expected, rel=1e-10)


def _te_rows(p_value, te_by_epoch):
    rows = []
    for epoch, te in te_by_epoch.items():
        for layer in ("act1", "act2"):
            for quantity, value in (("te_in_mean", te), ("te_x", te), ("te_x_floor", 0.001), ("te_x_p", p_value),
                                    ("te_y_p", 0.5)):
                rows.append({"epoch": epoch, "layer": layer, "estimator": "binary-te", "quantity": quantity,
                             "value": value})
    return rows


@pytest.mark.parametrize("p_value, tracks, verdict", [
    (0.01, True, "supported"),
    (0.01, False, "inconclusive"),
    (0.5, True, "inconclusive"),
    (0.5, False, "not supported"),
])
def test_transfer_entropy_rule(p_value, tracks, verdict):
    gaps = {1: 0.0, 2: 0.01, 3: 0.02, 4: 0.03, 5: 0.04, 6: 0.05}
    te = {e: 0.001 * e for e in gaps} if tracks else {1: 3e-3, 2: 1e-3, 3: 5e-3, 4: 2e-3, 5: 2e-3, 6: 4e-3}
    rows = _te_rows(p_value, te)
    flow = transfer_entropy._by_epoch(rows, "te_in_mean")
    last = type("Last", (), {"train_accuracy": 1.0, "test_accuracy": 0.95, "gap": 0.05})()
    power = {"exact": 0.0072, "value": 0.005, "null_mean": 0.0017, "p": 0.04}
    assert transfer_entropy._report(rows, flow, gaps, last, power, [], None, {}).verdict == verdict


def test_power_check_flow_has_the_closed_form_size():
    check = transfer_entropy.power_check(window=20000, permutations=20, seed=1)
    h = -(0.45 * math.log2(0.45) + 0.55 * math.log2(0.55))
    assert check["exact"] == pytest.approx(1 - h, rel=1e-12)
    # At this window the plug-in estimate is within its bias (~1/(N ln 2) bits) of the closed form.
    assert abs(check["value"] - check["exact"]) < 0.002
    assert check["p"] < 0.05


def test_transfer_entropy_binarizes_as_the_papers_code(quick_runs):
    """The set-up of CNN-TE (issue 31): pre-activations |a| ≥ tr1 = 1.0, the
    output as softmax ≥ tr2 = 0.9, each choice in the report with the line it follows."""
    out, _ = quick_runs("transfer-entropy")
    text = (out / "report.md").read_text()
    assert "## The set-up, against the paper's code" in text
    for line in ("xb[(xb <= -self.g1) | (xb >= self.g1)] = 1", "xb[xb >= self.g2] = 1", "shuffle=True", "te_length"):
        assert line in text
    assert set(pd.read_csv(out / "results.csv")["layer"]) == set(transfer_entropy.LAYERS)
    assert transfer_entropy.LAYERS[:-1] == ["fc1", "fc2", "fc3", "fc4"]  # the linear maps before each tanh
