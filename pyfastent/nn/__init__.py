"""Network analysis: layer capture, sweeps, information planes, layer
similarity maps, layer transfer entropy and token-level profiles of
sequence models."""
from pyfastent.nn.capture import capture
from pyfastent.nn.hooks import select_layers
from pyfastent.nn.pid import feature_map_pid
from pyfastent.nn.similarity import LayerSimilarity, SimilarityMap, layer_similarity
from pyfastent.nn.plane import InformationPlane
from pyfastent.nn.graph import dpi_pairs
from pyfastent.nn.sweep import SweepResult, dpi_violations, layer_sweep
from pyfastent.nn.table import PlaneTable
from pyfastent.nn.tokens import TokenProfile, token_profile
from pyfastent.nn.variables import default_estimators
from pyfastent.nn.transfer import LayerTE, continuous_layer_transfer_entropy, layer_transfer_entropy, pairwise_te

__all__ = [
    "InformationPlane",
    "LayerSimilarity",
    "LayerTE",
    "PlaneTable",
    "SimilarityMap",
    "SweepResult",
    "TokenProfile",
    "capture",
    "continuous_layer_transfer_entropy",
    "default_estimators",
    "dpi_pairs",
    "dpi_violations",
    "feature_map_pid",
    "layer_similarity",
    "layer_sweep",
    "layer_transfer_entropy",
    "pairwise_te",
    "select_layers",
    "token_profile",
]
