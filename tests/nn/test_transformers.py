"""Hugging Face transformers (built from configs, random weights, offline)
through capture, layer_sweep, InformationPlane, token_profile and the
``pyfastent tokens`` command; the defaults of other models unchanged."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import pyfastent as pf
from pyfastent import nn as pnn
from pyfastent.nn.sequence import RESIDUAL_STREAM, block_layers
from word_tokenizer import word_tokenizer

tf = pytest.importorskip("transformers")
tf.logging.set_verbosity_error()

N, T, VOCAB = 24, 10, 60


def bert():
    torch.manual_seed(0)
    return tf.BertModel(tf.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=64)).eval()


def gpt2():
    torch.manual_seed(1)
    config = tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=3, n_head=2, n_positions=64,
                           bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1)
    return tf.GPT2Model(config).eval()


def vit():
    torch.manual_seed(2)
    return tf.ViTModel(tf.ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                    intermediate_size=64, image_size=16, patch_size=4, num_channels=3)).eval()


def llama():
    torch.manual_seed(3)
    return tf.LlamaModel(tf.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                        num_attention_heads=2, num_key_value_heads=2,
                                        max_position_embeddings=64)).eval()


FINAL_NORM = {bert: None, gpt2: "ln_f", vit: "layernorm", llama: "norm"}


def token_batch(seed=0, n=N, t=T):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB - 1, (n, t), generator=g)
    lengths = torch.randint(2, t + 1, (n,), generator=g)
    mask = (torch.arange(t)[None] < lengths[:, None]).long()
    labels = torch.randint(0, 3, (n,), generator=g)
    return {"input_ids": ids, "attention_mask": mask}, labels, lengths


def module_lists(model):
    return [name for name, m in model.named_modules() if isinstance(m, nn.ModuleList)]


@pytest.mark.parametrize("make", [bert, gpt2, vit, llama])
def test_default_layers_are_the_embedding_output_every_block_and_the_final_norm(make):
    model = make()
    (blocks,) = module_lists(model)
    depth = len(dict(model.named_modules())[blocks])
    norm = FINAL_NORM[make]
    expected = [f"{blocks}.0:input"] + [f"{blocks}.{i}" for i in range(depth)] + ([norm] if norm else [])
    assert pnn.select_layers(model) == expected


def test_resnet18_defaults_unchanged():
    from pyfastent.models import resnet18

    fired = pnn.capture(resnet18(stem="cifar"), torch.randn(2, 3, 32, 32))  # a reused ReLU fires as relu#2
    assert len(fired) == 59
    assert len(pnn.capture(resnet18(stem="imagenet"), torch.randn(2, 3, 64, 64))) == 60
    assert block_layers(resnet18()) == []


@pytest.mark.parametrize("make", [bert, gpt2])
def test_masked_capture_equals_each_sequence_alone(make):
    model = make()
    inputs, _, lengths = token_batch()
    pooled = pnn.capture(model, inputs, pooling="mean", batch_size=7)
    last = pnn.capture(model, inputs, pooling="last")
    names = pnn.select_layers(model)
    assert list(pooled) == names
    for b in (0, 5, 11):
        alone = pnn.capture(model, {"input_ids": inputs["input_ids"][b:b + 1, :lengths[b]]})
        for name in names:
            assert torch.allclose(pooled[name][b], alone[name][0].mean(0), atol=1e-5), name
            assert torch.allclose(last[name][b], alone[name][0, -1], atol=1e-5), name


def test_capture_of_batches_padded_to_other_lengths_needs_a_pooling():
    model = gpt2()
    inputs, _, _ = token_batch()
    batches = [{k: v[:8, :6] for k, v in inputs.items()}, {k: v[8:16] for k, v in inputs.items()}]
    with pytest.raises(ValueError, match="pooling"):
        pnn.capture(model, batches)
    assert pnn.capture(model, batches, pooling="mean")["h.2"].shape == (16, 32)


def _sweep_values(result, estimator_label=None):
    return {(r["layer"], r["estimator"]): (float(r["h_t"]), float(r["i_xt"]), float(r["i_ty"])) for r in result.rows
            if estimator_label is None or r["estimator"] == estimator_label}


@pytest.mark.parametrize("make", [bert, gpt2])
def test_layer_sweep_of_a_language_model_with_its_mask(make):
    model = make()
    inputs, labels, _ = token_batch()
    est = pf.Renyi(sigma=3.0)
    result = pnn.layer_sweep(model, inputs, labels, estimators=[est], progress=False)
    names = pnn.select_layers(model)
    assert [r["layer"] for r in result.rows] == names
    assert result.dpi_method == RESIDUAL_STREAM
    assert result.dpi_pairs == list(zip(names[:-1], names[1:]))
    assert "embedding output" in result.metadata["x"] and result.metadata["pooling"] == "mean"
    # The sweep's numbers are the estimator's on the pooled states, X the embedding output.
    pooled = pnn.capture(model, inputs, pooling="mean")
    x = pooled[names[0]]
    for name in names[1:]:
        row = _sweep_values(result)[(name, est.label)]
        assert row[0] == pytest.approx(float(est.entropy(pooled[name])), abs=1e-4)
        assert row[1] == pytest.approx(float(pf.mutual_information(x, pooled[name], estimator=est)), abs=1e-4)
        assert row[2] == pytest.approx(float(pf.mutual_information(pooled[name], labels, estimator=est)), abs=1e-4)
        assert row[1] < row[0] - 1e-3  # not the I(X;T) = H(T) of token ids taken as X


def test_token_ids_alone_are_measured_against_the_embedding_output():
    model = gpt2()
    inputs, labels, _ = token_batch()
    result = pnn.layer_sweep(model, inputs["input_ids"], labels, estimators=[pf.Renyi(sigma=3.0)], progress=False)
    assert "embedding output" in result.metadata["x"]
    assert all(r["i_xt"] < r["h_t"] for r in result.rows if r["layer"] != "h.0:input")


def test_x_variable_replaces_the_embedding_output():
    model = bert()
    inputs, labels, _ = token_batch()
    x = torch.randn(N, 5, generator=torch.Generator().manual_seed(3))
    est = pf.Renyi(sigma=3.0)
    result = pnn.layer_sweep(model, inputs, labels, estimators=[est], layers=["encoder.layer.1"], x_variable=x,
                             progress=False)
    assert result.metadata["x"] == "x_variable"
    t = pnn.capture(model, inputs, layers=["encoder.layer.1"], pooling="mean")["encoder.layer.1"]
    assert float(result.rows[0]["i_xt"]) == pytest.approx(float(pf.mutual_information(x, t, estimator=est)), abs=1e-4)


def test_a_dict_for_a_model_without_blocks_needs_x_variable():
    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, features):
            return self.lin(features)

    x = torch.randn(12, 4)
    y = torch.arange(12) % 2
    with pytest.raises(ValueError, match="x_variable"):
        pnn.layer_sweep(Keyword(), {"features": x}, y, progress=False)
    result = pnn.layer_sweep(Keyword(), {"features": x}, y, x_variable=x, progress=False)
    assert [r["layer"] for r in result.rows][:1] == ["lin"]


def test_sweep_over_batches_padded_differently_equals_one_batch():
    """GPT-2 attends causally and masks padding: the pooled states of a
    sequence do not depend on how far its batch was padded."""
    model = gpt2()
    inputs, labels, lengths = token_batch()
    est = pf.Renyi(sigma=3.0)
    whole = pnn.layer_sweep(model, inputs, labels, estimators=[est], progress=False)
    batches = []
    for start in range(0, N, 8):
        width = int(lengths[start:start + 8].max())
        batches.append(({k: v[start:start + 8, :width] for k, v in inputs.items()}, labels[start:start + 8]))
    streamed = pnn.layer_sweep(model, batches, estimators=[est], progress=False, memory_budget="50MB")
    a, b = _sweep_values(whole), _sweep_values(streamed)
    assert a.keys() == b.keys()
    for key in a:
        assert np.allclose(a[key], b[key], atol=1e-4), key


def test_vit_sweep_takes_pixels_as_x_and_pools_every_token():
    model = vit()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(N, 3, 16, 16, generator=g)
    y = torch.randint(0, 3, (N,), generator=g)
    result = pnn.layer_sweep(model, x, y, estimators=[pf.Renyi()], progress=False)
    assert result.metadata["x"] == "the probe inputs"
    assert result.dpi_method == RESIDUAL_STREAM
    assert [r["layer"] for r in result.rows] == pnn.select_layers(model)  # embeddings, 3 blocks, final norm
    assert len(result.rows) == 5
    first = pnn.capture(model, x, pooling="first")
    plain = pnn.capture(model, x)
    block = pnn.select_layers(model)[1]
    assert torch.allclose(first[block], plain[block][:, 0])


def test_information_plane_tracks_a_language_model():
    model = bert()
    inputs, labels, _ = token_batch()
    tracker = pnn.InformationPlane(model, inputs, labels, progress=False)
    tracker.step(epoch=0)
    layers = {r["layer"] for r in tracker.rows}
    assert layers == set(pnn.select_layers(model))
    assert "embedding output" in tracker.table.metadata["x"]
    logdet = [e for e in tracker.estimators if isinstance(e, pf.LogDet)][0]
    assert logdet.beta == 100 * 32  # fixed by X, the pooled embedding output (D = 32)


# ---- token_profile ----------------------------------------------------------------------------

@pytest.mark.parametrize("make", [gpt2, bert, llama])
def test_token_profile_measures_the_points_capture_takes(make):
    model = make()
    inputs, _, _ = token_batch()
    states = pnn.capture(model, inputs)
    names = list(states)
    x, _ = pnn.tokens._StateSource(model, None, None)(inputs, None)  # what token_profile measures
    for k, name in enumerate(names):
        assert torch.equal(x[k], states[name]), name  # layer k of token_profile is layer k of capture, to 0
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True).hidden_states
    blocks = len(names) - 1 - (FINAL_NORM[make] is not None)
    for k in range(blocks):
        assert torch.equal(hidden[k], states[names[k]])
    last = FINAL_NORM[make] or names[-1]  # Hugging Face's last entry comes after the final norm
    assert torch.equal(hidden[-1], states[last])
    profile = pnn.token_profile(model, inputs, batch_size=5, normalizations=("raw", "maxEntropy"), progress=False)
    mask = inputs["attention_mask"]
    layered = list(states.values())
    expected = {
        ("prompt_entropy", "raw"): pf.prompt_entropy(layered, mask),
        ("prompt_entropy", "maxEntropy"): pf.prompt_entropy(layered, mask, normalization="maxEntropy"),
        ("effective_rank", None): pf.effective_rank(layered, mask),
        ("token_logdet", None): pf.token_logdet(layered, mask),
        ("curvature", None): pf.curvature(layered, mask).per_prompt,
    }
    for (measure, norm), values in expected.items():
        rows = profile.values(measure, norm)
        assert [r["name"] for r in rows] == names and [r["layer"] for r in rows] == list(range(len(names)))
        for r in rows:
            v = values[r["layer"]]
            assert r["mean"] == pytest.approx(float(v.mean()), abs=1e-6)
            assert r["stderr"] == pytest.approx(float(v.std() / math.sqrt(v.numel())), abs=1e-6)
            assert r["n"] == v.numel()
    dataset = pf.dataset_entropy(layered, mask)
    for r in profile.values("dataset_entropy"):
        assert r["mean"] == pytest.approx(float(dataset[r["layer"]]), abs=1e-6)
        assert r["stderr"] is None
    assert list(profile.metadata["points"]) == names
    assert "embedding output" in profile.metadata["points"][names[0]]
    if FINAL_NORM[make]:
        assert "final norm" in profile.metadata["points"][names[-1]]
    again = pnn.token_profile(model, inputs, batch_size=N, normalizations=("raw", "maxEntropy"), progress=False)
    assert all(r["mean"] == pytest.approx(s["mean"], abs=1e-9) for r, s in zip(profile.rows, again.rows))


def test_token_profile_files_round_trip(tmp_path):
    profile = pnn.token_profile(gpt2(), token_batch()[0], measures=("prompt_entropy", "dataset_entropy"),
                                progress=False)
    for name in ("p.csv", "p.jsonl"):
        back = pnn.TokenProfile.load(profile.save(tmp_path / name))
        assert back.rows == profile.rows and back.metadata == profile.metadata
    image = pf.plot.token_curves(profile, tmp_path / "p.png")
    assert image.stat().st_size > 0
    with pytest.raises(ValueError, match=".csv or .jsonl"):
        profile.save(tmp_path / "p.txt")


def test_token_profile_hooks_a_model_without_hidden_states():
    torch.manual_seed(5)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, 16)
            self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)

        def forward(self, input_ids):
            return self.encoder(self.embed(input_ids))

    model = Encoder().eval()
    ids = token_batch()[0]["input_ids"]
    profile = pnn.token_profile(model, ids, measures="prompt_entropy", progress=False)
    assert [r["name"] for r in profile.rows] == ["encoder.layers.0:input", "encoder.layers.0", "encoder.layers.1"]
    states = pnn.capture(model, ids)
    for r in profile.rows:
        assert r["mean"] == pytest.approx(float(pf.prompt_entropy(states[r["name"]]).mean()), abs=1e-6)


def tiny_tokenizer(tmp_path):
    return word_tokenizer(["the", "cat", "sat"])


def test_token_profile_of_strings_with_special_tokens_left_out(tmp_path):
    tokenizer, size = tiny_tokenizer(tmp_path)
    torch.manual_seed(6)
    model = tf.BertModel(tf.BertConfig(vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=64)).eval()
    prompts = ["the cat sat", "a b c d e f", "cat", "the the cat sat sat"]
    profile = pnn.token_profile(model, prompts, tokenizer, exclude_special=True, measures="prompt_entropy",
                                progress=False)
    encoded = tokenizer(prompts, padding=True, return_tensors="pt", return_special_tokens_mask=True)
    special = encoded.pop("special_tokens_mask")
    with torch.no_grad():
        hidden = model(**encoded, output_hidden_states=True).hidden_states
    values = pf.prompt_entropy(list(hidden), encoded["attention_mask"], exclude=special)
    assert float(values[:, 2].abs().max()) == 0.0  # "cat" alone: one real token left
    for r in profile.rows:
        assert r["mean"] == pytest.approx(float(values[r["layer"]].mean()), abs=1e-6)
    with pytest.raises(ValueError, match="tokenizer"):
        pnn.token_profile(model, prompts, progress=False)


def test_token_profile_bad_arguments():
    model = gpt2()
    inputs = token_batch()[0]
    for kwargs in ({"measures": "entropy"}, {"normalizations": "log2"}, {"batch_size": 0}, {"alpha": -1},
                   {"measures": ()}, {"exclude_special": True}):
        with pytest.raises(ValueError):
            pnn.token_profile(model, inputs, progress=False, **kwargs)


# ---- the command line -----------------------------------------------------------------------

def test_tokens_command_on_a_saved_model(tmp_path, capsys):
    from pyfastent.cli import main

    tokenizer, size = tiny_tokenizer(tmp_path)
    torch.manual_seed(7)
    model = tf.BertModel(tf.BertConfig(vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=32))
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    text = tmp_path / "prompts.txt"
    text.write_text("the cat sat\n\nabc def ghi the cat\ncat sat the\n" + "a b c d e f g h i j k l m n o p " * 4 + "\n")
    code = main(["tokens", "--model", str(tmp_path / "model"), "--text", str(text), "--out", str(tmp_path / "out"),
                 "--batch-size", "2", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "prompt entropy" in out and "4 prompts" in out
    profile = pnn.TokenProfile.load(tmp_path / "out" / "tokens.csv")
    assert {r["measure"] for r in profile.rows} == set(pnn.tokens.MEASURES)
    assert profile.metadata["max_length"] == 32  # the model's positions: the long line is truncated
    assert (tmp_path / "out" / "tokens.png").stat().st_size > 0


def test_tokens_command_errors_are_one_line(tmp_path, capsys):
    from pyfastent.cli import main

    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert main(["tokens", "--model", str(tmp_path), "--text", str(tmp_path / "missing.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["tokens", "--model", "nowhere", "--text", str(empty)]) == 2
    assert "no non-empty lines" in capsys.readouterr().err
    empty.write_text("hello\n")
    assert main(["tokens", "--model", "nowhere", "--text", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "'nowhere': no such directory" in capsys.readouterr().err
    assert main(["tokens", "--model", str(tmp_path), "--text", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "has no config.json, so it holds no model saved with save_pretrained" in capsys.readouterr().err
    assert main(["tokens", "--model", "x:y", "--text", str(empty), "--normalizations", "bits"]) == 2
    assert "--normalizations" in capsys.readouterr().err
