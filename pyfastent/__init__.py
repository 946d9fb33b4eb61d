"""pyfastent: information theory for neural network activations.

Four estimator families behind one API (matrix-based Rényi with tensor and
multivariate kernels, LogDet, plug-in discrete) and measures written once
over all of them (MI, CMI, TC, DTC, PID, transfer entropy); token-level
measures of sequence models (prompt and dataset entropy, effective rank,
token log-determinants, DiME). Results are in bits unless another ``base``
is given.
"""
import importlib

from pyfastent._native import use_backend
from pyfastent._warnings import HookWarning, SaturationWarning
from pyfastent.estimators import Discrete, Estimator, LogDet, Prepared, Renyi
from pyfastent.measures import (
    PIDResult,
    conditional_mutual_information,
    dual_total_correlation,
    mutual_information,
    pid,
    total_correlation,
    transfer_entropy,
)
from pyfastent.estimate import Estimate
from pyfastent.info import backend_info
from pyfastent.reuse import clear_reuse
from pyfastent.ops import gram, renyi_entropy_from_gram
from pyfastent.significance import PermutationResult, permutation_test
from pyfastent.similarity import cka, hsic, minibatch_cka, mutual_knn, normalized_mutual_information
from pyfastent.token_measures import curvature, dataset_entropy, effective_rank, prompt_entropy, token_logdet
from pyfastent.view_measures import dime, infonce, lidar
from pyfastent.variable import Variable

from pyfastent import settings  # noqa: F401 - pf.settings.memory_budget(...) and the others
from pyfastent._version import __version__  # noqa: F401 - the package's version

# Imported on first use (pyfastent.nn, pyfastent.plot, ...): `import pyfastent`
# stays cheap and never pulls in matplotlib or scikit-learn.
_SUBMODULES = ("nn", "plot", "models", "data", "ops", "widths", "compat", "reproduce", "distributed")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"pyfastent.{name}")
    raise AttributeError(f"module 'pyfastent' has no attribute {name!r}")

__all__ = [
    "Discrete",
    "Estimate",
    "Estimator",
    "HookWarning",
    "LogDet",
    "PIDResult",
    "PermutationResult",
    "Prepared",
    "Renyi",
    "SaturationWarning",
    "Variable",
    "backend_info",
    "cka",
    "clear_reuse",
    "conditional_mutual_information",
    "curvature",
    "dataset_entropy",
    "dime",
    "dual_total_correlation",
    "effective_rank",
    "gram",
    "hsic",
    "infonce",
    "lidar",
    "minibatch_cka",
    "mutual_information",
    "mutual_knn",
    "normalized_mutual_information",
    "permutation_test",
    "pid",
    "prompt_entropy",
    "renyi_entropy_from_gram",
    "token_logdet",
    "total_correlation",
    "transfer_entropy",
    "use_backend",
]
