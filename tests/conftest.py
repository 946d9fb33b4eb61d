import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _private_plan_cache(tmp_path_factory):
    """The eigensolver plan of the test run goes to a folder of its own, not the user's cache."""
    import os

    os.environ["PYFASTENT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(autouse=True)
def _nothing_reused_from_another_test():
    """Each test starts with an empty reuse table (``pyfastent.reuse``): counts of the work done stay its own."""
    import pyfastent

    pyfastent.clear_reuse()


@pytest.fixture(params=DEVICES)
def device(request):
    """Every estimator test runs on each device that is present."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device(request.param)


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def built_grams(monkeypatch):
    """The names of the variables whose N×N products (inner products,
    per-channel distances) are built, one entry per build."""
    from pyfastent.ops import reduction

    names = []
    build = reduction.reduce_rows

    def recording(rows, needs):
        if needs.gram is not None or needs.standardized_gram or needs.channel_rules:
            names.append(rows.name)
        return build(rows, needs)

    monkeypatch.setattr(reduction, "reduce_rows", recording)
    return names
