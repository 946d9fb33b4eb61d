"""Transformers as researchers use them (issue 25): our hooks inside their
training loops, trackers on keyword inputs, left padding, round-off of
float32 states, the views of each prompt, and the ``pyfastent tokens``
command's checks. Models are built from configs (random weights, offline)."""
import math
import warnings

import numpy as np
import pytest
import torch

import pyfastent as pf
from pyfastent import nn as pnn
from pyfastent._warnings import HookWarning
from pyfastent.nn.prompts import augmentations
from word_tokenizer import word_tokenizer

tf = pytest.importorskip("transformers")
tf.logging.set_verbosity_error()
VOCAB = 100


def bert():
    torch.manual_seed(0)
    return tf.BertModel(tf.BertConfig(vocab_size=VOCAB, num_hidden_layers=2, hidden_size=64, num_attention_heads=2,
                                      intermediate_size=128, max_position_embeddings=64))


def gpt2():
    torch.manual_seed(1)
    return tf.GPT2Model(tf.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=VOCAB, n_positions=64)).eval()


def llama():
    torch.manual_seed(3)
    return tf.LlamaModel(tf.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2,
                                        max_position_embeddings=64)).eval()


def ids_and_mask(n=64, t=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (n, t), generator=g)
    return ids, torch.ones_like(ids)


# ---- defect 1: the TE hooks inside the user's training loop ------------------------------------

def test_te_tracker_survives_keyword_only_training_calls():
    model = bert()
    ids, mask = ids_and_mask()
    tracker = pnn.InformationPlane(model, {"input_ids": ids, "attention_mask": mask}, torch.arange(64) % 2,
                                   transfer_entropy=pnn.LayerTE(window=64, floor_permutations=2), progress=False)
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("error", HookWarning)  # these calls can all be read
        for start in range(0, 64, 8):
            out = model(input_ids=ids[start:start + 8], attention_mask=mask[start:start + 8])  # IndexError before
        model(ids[:8], mask[:8])  # positional, mask included
    assert out.last_hidden_state.shape == (8, 12, 64)
    series = tracker._series.series()
    assert list(series)[0] == "input" and all(t.shape[0] == 64 for t in series.values())
    # X is the pooled embedding output, as in a sweep; every layer is pooled over tokens
    first = tracker.names[0]
    assert first.endswith(":input") and first not in series
    assert all(t.shape[1] == 64 for t in series.values())
    model.eval()
    tracker.step()
    te = [r for r in tracker.rows if r["estimator"] == "binary-te"]
    assert {r["layer"] for r in te} == set(tracker.names[1:])
    tracker.close()


def test_a_call_our_hooks_cannot_read_runs_unchanged_and_warns_once():
    model = gpt2()
    ids, mask = ids_and_mask(n=16)
    tracker = pnn.InformationPlane(model, {"input_ids": ids, "attention_mask": mask}, torch.arange(16) % 2,
                                   transfer_entropy=True, pooling="none", progress=False)
    model.train()
    model(input_ids=ids[:4, :6])  # recorded: rows of 6·64 numbers
    hooked = []
    with pytest.warns(HookWarning, match="another width") as caught:
        for _ in range(3):  # other lengths cannot join the series: left out, one warning
            torch.manual_seed(0)
            hooked.append(model(input_ids=ids[:4, :9]).last_hidden_state)
    assert len(caught) == 1
    assert all(t.shape[0] == 4 for t in tracker._series.series().values())  # only the first call
    tracker.close()
    torch.manual_seed(0)
    assert torch.equal(model(input_ids=ids[:4, :9]).last_hidden_state, hooked[-1])  # as if unhooked


def test_hooks_removed_by_close_leave_the_model_as_it_was():
    model = bert()
    ids, mask = ids_and_mask(n=8)
    model.eval()
    before = model(input_ids=ids, attention_mask=mask).last_hidden_state
    tracker = pnn.InformationPlane(model, {"input_ids": ids, "attention_mask": mask}, torch.arange(8) % 2,
                                   transfer_entropy=True, progress=False)
    tracker.close()
    assert not model._forward_pre_hooks and not model._forward_hooks
    assert torch.equal(model(input_ids=ids, attention_mask=mask).last_hidden_state, before)


# ---- defect 2: one name per estimator; plots of token trackers ---------------------------------

def test_token_tracker_names_its_estimators_once_and_plots(tmp_path):
    from pyfastent import plot

    model = bert().eval()
    ids, mask = ids_and_mask()
    mask[::2, 8:] = 0
    tracker = pnn.InformationPlane(model, {"input_ids": ids, "attention_mask": mask}, torch.arange(64) % 2,
                                   progress=False)
    tracker.step()
    tracker.step()
    labels = {r["estimator"] for r in tracker.rows}
    assert set(tracker.table.metadata["estimators"]) == labels
    assert "logdet(b=6400,cov)" in labels  # β = 100·d of the pooled embedding output (D = 64)
    path = plot.information_plane(tracker, tmp_path / "plane.png")
    image = plt_image(path)
    assert image.std() > 0.05  # drawn trajectories, not a blank canvas


def plt_image(path):
    import matplotlib.image

    return np.asarray(matplotlib.image.imread(path))[..., :3]


# ---- defect 3 and section 3: left padding ------------------------------------------------------

def padded(ids, lengths, side):
    """ids [B, T] padded to the right or left with token 0 according to ``lengths``."""
    b, t = ids.shape
    out, mask = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        where = slice(0, n) if side == "right" else slice(t - n, t)
        out[i, where], mask[i, where] = ids[i, :n], 1
    return out, mask


def test_first_pooling_takes_the_first_real_token_under_left_padding():
    model = gpt2()
    ids = torch.randint(1, VOCAB, (4, 6))
    mask = torch.ones_like(ids)
    mask[1:, :3] = 0
    first = pnn.capture(model, {"input_ids": ids, "attention_mask": mask}, pooling="first")["h.1"]
    full = pnn.capture(model, {"input_ids": ids, "attention_mask": mask})["h.1"]
    assert torch.equal(first[0], full[0, 0])
    for b in (1, 2, 3):
        assert torch.equal(first[b], full[b, 3])  # not position 0, a pad


LENGTHS = [7, 3, 10, 5, 10, 2]


def alone_and_batched(make, side):
    model = make()
    g = torch.Generator().manual_seed(11)
    raw = torch.randint(1, VOCAB, (len(LENGTHS), 10), generator=g)
    ids, mask = padded(raw, LENGTHS, side)
    return model, raw, {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("make", [gpt2, llama])
def test_capture_of_a_padded_batch_equals_each_prompt_alone(make, side):
    model, raw, batch = alone_and_batched(make, side)
    together = pnn.capture(model, batch, pooling="mean")
    for i, n in enumerate(LENGTHS):
        alone = pnn.capture(model, {"input_ids": raw[i:i + 1, :n], "attention_mask": torch.ones(1, n).long()},
                            pooling="mean")
        for name, value in alone.items():
            torch.testing.assert_close(together[name][i], value[0], rtol=1e-5, atol=1e-5 * float(value.abs().max()))


@pytest.mark.parametrize("make", [gpt2, llama])
def test_sweep_and_token_profile_of_left_padded_batches_equal_prompts_alone(make):
    model, raw, batch = alone_and_batched(make, "left")
    singles = [{"input_ids": raw[i:i + 1, :n], "attention_mask": torch.ones(1, n).long()}
               for i, n in enumerate(LENGTHS)]
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    est = [pf.Renyi(alpha=2.0, sigma=3.0), pf.LogDet(beta=1.0)]
    swept = pnn.layer_sweep(model, batch, y, estimators=est, progress=False)
    alone = pnn.layer_sweep(model, singles, y, estimators=est, progress=False)
    points = swept.metadata["points"]
    assert list(points) == list(dict.fromkeys(r["layer"] for r in swept.rows)) and "final norm" in points[list(points)[-1]]
    for a, b in zip(swept.rows, alone.rows):
        for q in ("h_t", "i_xt", "i_ty"):
            assert a[q] == pytest.approx(b[q], rel=1e-5, abs=1e-9)
    profile = pnn.token_profile(model, batch, batch_size=6, measures=("prompt_entropy", "token_logdet"),
                                progress=False)
    each = pnn.token_profile(model, singles, measures=("prompt_entropy", "token_logdet"), progress=False)
    for key, values in profile.per_prompt.items():
        torch.testing.assert_close(values, each.per_prompt[key], rtol=1e-5, atol=1e-7)
    assert profile.metadata["position_ids"].startswith("built from the attention mask")


# ---- defect 4: round-off eigenvalues of float32 states ----------------------------------------

@pytest.mark.parametrize("alpha", [0.1, 0.25, 0.5, 1.0, 2.0])
def test_float32_two_token_prompts_have_entropy_zero(alpha):
    torch.manual_seed(0)
    states = torch.randn(200, 2, 768) * 3 + 1  # two tokens: rank 1 after centring
    assert float(pf.prompt_entropy(states, alpha=alpha).abs().max()) == 0.0
    assert float(pf.effective_rank(states).max()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_float32_low_rank_grams_have_their_rank_s_entropy(alpha):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(60, 3, generator=g)  # a rank-3 linear kernel
    exact = pf.Renyi(alpha=alpha, kernel="linear").entropy(x.double())
    assert pf.Renyi(alpha=alpha, kernel="linear").entropy(x) == pytest.approx(exact, abs=1e-4)
    gram = x @ x.T
    bits = pf.renyi_entropy_from_gram(gram, alpha)
    lam = np.linalg.eigvalsh((x.double() @ x.double().T).numpy())[-3:]
    lam = lam / lam.sum()
    assert bits == pytest.approx(math.log2((lam**alpha).sum()) / (1 - alpha), abs=1e-4)


# ---- views: DiME, LiDAR, InfoNCE in token_profile ----------------------------------------------

PROMPTS = ["the cat sat on the mat", "a dog ran far", "birds sing at dawn", "rain falls on the roof",
           "we read old books", "the sea is calm"]


def tiny_tokenizer(tmp_path, padding_side="right"):
    return word_tokenizer({w for p in PROMPTS for w in p.split()}, padding_side)


def test_token_profile_of_views_equals_the_view_measures(tmp_path):
    tokenizer, size = tiny_tokenizer(tmp_path)
    torch.manual_seed(5)
    model = tf.BertModel(tf.BertConfig(vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=64)).eval()
    make = augmentations(3, seed=1)
    groups = [make(p) for p in PROMPTS]
    assert groups == [make(p) for p in PROMPTS] and all(len(set(g)) > 1 for g in groups)  # seeded, edited
    profile = pnn.token_profile(model, PROMPTS, tokenizer, views=make, progress=False, batch_size=4)
    assert profile.rows == pnn.token_profile(model, PROMPTS, tokenizer, views=groups, progress=False,
                                             batch_size=4).rows
    pooled = []
    for v in range(3):
        encoded = tokenizer([g[v] for g in groups], padding=True, return_tensors="pt")
        states = pnn.capture(model, dict(encoded))
        x, real, _ = pf.token_measures.checked_states(list(states.values()), encoded["attention_mask"], None)
        pooled.append(pf.token_measures.mean_states(x, real)[:, :, None])
    expected = {"dime": pf.dime(pooled[0], pooled[1]), "lidar": pf.lidar(pooled),
                "infonce": pf.infonce(pooled[0], pooled[1])}
    for measure, values in expected.items():
        rows = profile.values(measure)
        assert len(rows) == len(values)
        for r in rows:  # the profile ran float32 forwards in batches of 4, the reference in one of 6
            assert r["mean"] == pytest.approx(float(values[r["layer"]]), abs=1e-6)
    tokenized = [dict(tokenizer([g[v] for g in groups], padding=True, return_tensors="pt")) for v in range(3)]
    encoded = dict(tokenizer(PROMPTS, padding=True, return_tensors="pt"))
    from_ids = pnn.token_profile(model, encoded, views=tokenized, progress=False, batch_size=4)
    for measure in expected:
        for r, s in zip(from_ids.values(measure), profile.values(measure)):  # padded to other lengths: float32
            assert r["mean"] == pytest.approx(s["mean"], abs=1e-6)
    with pytest.raises(ValueError, match="views"):
        pnn.token_profile(model, PROMPTS, tokenizer, measures="lidar", progress=False)
    with pytest.raises(ValueError, match="groups"):
        pnn.token_profile(model, PROMPTS, tokenizer, views=groups[:2], progress=False)


# ---- defects 5, 6 and the messages of `pyfastent tokens` ---------------------------------------

@pytest.fixture
def saved(tmp_path):
    """A GPT-2 of 32 positions saved with and without its tokenizer, and a tokenizer alone."""
    tokenizer, size = tiny_tokenizer(tmp_path, padding_side="left")
    model = tf.GPT2Model(tf.GPT2Config(vocab_size=size, n_embd=32, n_layer=2, n_head=2, n_positions=32))
    model.save_pretrained(tmp_path / "full")
    tokenizer.save_pretrained(tmp_path / "full")
    model.save_pretrained(tmp_path / "no-tokenizer")
    tokenizer.save_pretrained(tmp_path / "no-model")
    (tmp_path / "no-weights").mkdir()
    (tmp_path / "no-weights" / "config.json").write_text((tmp_path / "full" / "config.json").read_text())
    text = tmp_path / "prompts.txt"
    text.write_text("\n".join(PROMPTS) + "\n")
    return tmp_path, text


@pytest.mark.parametrize("model, args, message", [
    ("no-tokenizer", [], "has no tokenizer files (looked for tokenizer.json"),
    ("full", ["--max-length", "1000"], "--max-length 1000 is above the 32 positions"),
    ("missing", [], "missing': no such directory"),
    ("no-model", [], "has no config.json, so it holds no model"),
    ("no-weights", [], "has config.json but no weights"),
])
def test_tokens_command_says_what_it_looked_for(saved, capsys, model, args, message):
    from pyfastent.cli import main

    root, text = saved
    spec = str(root / model)
    code = main(["tokens", "--model", spec, "--text", str(text), "--out", str(root / "out"), "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [f"pyfastent tokens: error: {err.split('error: ', 1)[1].strip()}"]
    assert message in err and "Traceback" not in err
    assert not (root / "out" / "tokens.csv").exists()  # refused before any work


@pytest.mark.slow  # six runs of the command
def test_tokens_command_left_padded_equals_one_prompt_at_a_time_and_takes_views(saved, capsys):
    from pyfastent.cli import main
    from pyfastent.nn import TokenProfile

    root, text = saved
    common = ["tokens", "--model", str(root / "full"), "--text", str(text), "--no-progress"]
    assert main([*common, "--out", str(root / "batched"), "--batch-size", "6"]) == 0
    assert main([*common, "--out", str(root / "alone"), "--batch-size", "1"]) == 0
    batched = TokenProfile.load(root / "batched" / "tokens.csv").rows
    alone = TokenProfile.load(root / "alone" / "tokens.csv").rows
    assert len(batched) == len(alone)
    for a, b in zip(batched, alone):
        assert a["mean"] == pytest.approx(b["mean"], rel=1e-5, abs=1e-7), (a["measure"], a["name"])
    tokenizer, size = tiny_tokenizer(root, padding_side="left")
    llama_dir = root / "llama"
    tf.LlamaModel(tf.LlamaConfig(vocab_size=size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=2,
                                 max_position_embeddings=32)).save_pretrained(llama_dir)
    tokenizer.save_pretrained(llama_dir)
    llama = ["tokens", "--model", str(llama_dir), "--text", str(text), "--no-progress"]
    assert main([*llama, "--out", str(root / "llama-batched"), "--batch-size", "6"]) == 0
    assert main([*llama, "--out", str(root / "llama-alone"), "--batch-size", "1"]) == 0
    for a, b in zip(TokenProfile.load(root / "llama-batched" / "tokens.csv").rows,
                    TokenProfile.load(root / "llama-alone" / "tokens.csv").rows):
        assert a["mean"] == pytest.approx(b["mean"], rel=1e-5, abs=1e-7), ("llama", a["measure"], a["name"])
    views = root / "views.txt"
    views.write_text("\n".join(f"{p}\t{p} x\t{p[::-1]}" for p in PROMPTS) + "\n")
    assert main([*common, "--out", str(root / "views"), "--views", str(views)]) == 0
    out = capsys.readouterr().out
    assert "DiME" in out and "LiDAR" in out and "InfoNCE" in out and "final norm" in out
    measures = {r["measure"] for r in TokenProfile.load(root / "views" / "tokens.csv").rows}
    assert {"dime", "lidar", "infonce", "curvature"} <= measures
    assert main([*common, "--out", str(root / "aug"), "--augment", "2"]) == 0
    views.write_text("only one view\n")
    assert main([*common, "--out", str(root / "bad"), "--views", str(views)]) == 2
    assert "one line of views per prompt" in capsys.readouterr().err
