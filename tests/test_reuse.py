"""What a call prepared, kept for the next call with the same data
(``pyfastent.reuse``): reused only while the data and the estimator's
options are unchanged, bounded by bytes, off when asked, safe across threads.
Values are checked against the same call with reuse off."""
import gc
import threading

import numpy as np
import pytest
import torch

import pyfastent as pf
from pyfastent import reuse


def fresh(fn):
    """``fn()`` with nothing kept or reused: the reference."""
    with pf.settings.reuse(False):
        return fn()


def samples(n=40, d=5, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_the_same_tensor_is_prepared_once_for_every_estimator_object_of_the_same_options(built_grams):
    x, t = samples(), samples(d=7, seed=1)
    want = fresh(lambda: pf.mutual_information(x, t))
    built_grams.clear()
    first = pf.mutual_information(x, t)
    assert built_grams == ["x", "y"] and first == want
    assert pf.mutual_information(x, t, estimator=pf.Renyi()) == first and built_grams == ["x", "y"]
    pf.mutual_information(x, t, estimator=pf.Renyi(alpha=2))  # other options: prepared again
    pf.mutual_information(x, t, estimator=pf.Renyi(sigma=2.0))
    assert built_grams == ["x", "y"] * 3


def test_an_in_place_change_is_seen_through_the_tensor_and_its_views(built_grams):
    x = samples()
    view = x[:, :3]
    est = pf.Renyi()
    before, before_view = est.entropy(x), est.entropy(view)
    assert len(built_grams) == 2  # a view is data of its own
    x[0, 0] += 1.0  # bumps the version counter that x and its views share
    want = fresh(lambda: (pf.Renyi().entropy(x), pf.Renyi().entropy(view)))
    built_grams.clear()
    after, after_view = est.entropy(x), est.entropy(view)
    assert len(built_grams) == 2 and after != before and after_view != before_view
    assert (after, after_view) == want
    view.mul_(2.0)  # through the view: the base sees it too
    want = fresh(lambda: pf.Renyi().entropy(x))
    built_grams.clear()
    assert est.entropy(x) == want and len(built_grams) == 1


def test_a_freed_tensor_leaves_the_table_and_its_id_never_hits():
    x = samples()
    value = pf.Renyi().entropy(x)
    assert len(reuse.TABLE) == 1
    freed = id(x)
    del x
    gc.collect()
    assert len(reuse.TABLE) == 0 and reuse.TABLE.nbytes == 0
    for seed in range(1, 200):  # CPython hands a freed object's memory out again: find a tensor with its id
        other = samples(seed=seed)
        if id(other) == freed:
            break
    assert pf.Renyi().entropy(other) == fresh(lambda: pf.Renyi().entropy(other)) != value


def test_numpy_arrays_are_recognized_by_their_bytes_and_a_change_is_seen(built_grams):
    a = samples().numpy().copy()
    est = pf.Renyi()
    first = est.entropy(a)
    assert est.entropy(a.copy()) == first and len(built_grams) == 1  # equal bytes: the same data
    a[0, 0] += 1.0
    want = fresh(lambda: pf.Renyi().entropy(a))
    built_grams.clear()
    assert est.entropy(a) == want != first and len(built_grams) == 1


def test_arrays_whose_digest_costs_more_than_it_saves_are_not_digested_again(built_grams, monkeypatch):
    monkeypatch.setattr(reuse, "DIGEST_SHARE", 0.0)  # any digest costs more than the share
    digests, blake2b = [], reuse.hashlib.blake2b
    monkeypatch.setattr(reuse.hashlib, "blake2b", lambda data, **kw: digests.append(1) or blake2b(data, **kw))
    a = samples().numpy()
    est = pf.Renyi()
    est.entropy(a)
    est.entropy(a)
    est.entropy(samples(seed=3).numpy())  # same shape and dtype: not digested either
    assert len(built_grams) == 3 and digests == [1] and len(reuse.TABLE) == 0
    est.entropy(samples(d=6).numpy())  # another shape is measured on its own
    assert digests == [1, 1]


def test_logdet_with_the_paper_beta_is_reused_only_once_its_beta_is_known(built_grams):
    x, t = samples(d=3), samples(d=60, seed=1)  # t wider than N: its N×N products are kept
    est = pf.LogDet()
    assert est.reuse_options() is None
    est.entropy(t)
    assert est.beta == pytest.approx(100 * 60)
    assert pf.LogDet().reuse_options() is None  # a new one may get its beta from other data
    est.entropy(t)
    assert built_grams == ["x", "x"]  # prepared before its β was set: not kept under it
    est.entropy(t)
    assert built_grams == ["x", "x"]
    assert pf.LogDet(beta=6000.0).entropy(t) == est.entropy(t) and built_grams == ["x", "x"]
    want = fresh(lambda: pf.mutual_information(x, t, estimator=pf.LogDet(beta=6000.0)))
    assert pf.mutual_information(x, t, estimator=pf.LogDet(beta=6000.0)) == want


def test_tensors_that_require_grad_are_never_kept(built_grams):
    leaf = samples().requires_grad_(True)
    pf.Renyi().entropy(leaf)
    pf.Renyi().entropy(leaf)
    assert len(built_grams) == 2 and len(reuse.TABLE) == 0


def test_off_bounded_and_cleared(built_grams):
    x, t, u = samples(), samples(seed=1), samples(seed=2)
    with pf.settings.reuse(False):
        pf.Renyi().entropy(x)
        pf.Renyi().entropy(x)
    assert len(built_grams) == 2 and len(reuse.TABLE) == 0
    one = 40 * 40 * 8  # a normalized Gram matrix of N = 40, float64
    with pf.settings.reuse(2 * one + 100):  # room for two: the least recently used goes first
        for v in (x, t, x, u):
            pf.Renyi().entropy(v)
        assert len(reuse.TABLE) == 2 and reuse.TABLE.nbytes <= 2 * one + 100
        built_grams.clear()
        pf.Renyi().entropy(x)
        pf.Renyi().entropy(u)
        assert built_grams == []
        pf.Renyi().entropy(t)
        assert built_grams == ["x"]
    with pf.settings.reuse("1KB"):  # larger than the whole budget: not kept
        pf.Renyi().entropy(samples(seed=9))
    pf.clear_reuse()
    assert len(reuse.TABLE) == 0 and reuse.TABLE.nbytes == 0
    with pytest.raises(ValueError, match="reuse"):
        pf.settings.reuse("lots").__enter__()


def test_threads_get_the_values_of_a_serial_run():
    x = samples(n=60)
    layers = [samples(n=60, d=4 + i, seed=i) for i in range(8)]
    want = fresh(lambda: [pf.mutual_information(x, t) for t in layers])
    got = [None] * len(layers)
    errors = []

    def work(i):
        try:
            for _ in range(3):
                got[i] = pf.mutual_information(x, layers[i])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(layers))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and got == want
    assert sum(1 for _ in reuse.TABLE._entries) == len(layers) + 1  # X once, each layer once
