"""Drop-in replacements: other packages' function names, signatures and
units, running on pyfastent's estimators and kernels, so that changing one
import line makes existing code faster and its results checked.

- ``pyfastent.compat.repitl``: ``repitl.matrix_itl`` (representation-itl 1.0.7)
  and its ``kernel_utils.gaussianKernel``; nats.
- ``pyfastent.compat.wickstrom``: the kernel and entropy functions of the
  tensor-kernel paper's code (Wickstrøm et al., InformationTheoryExperiment);
  bits, kernel exp(−d²/σ²).
- ``pyfastent.compat.logdet``: ``utils/LogDet.py`` of the LogDet paper's code
  (Zhouyin & Liu, LogDet-entropy); nats.
- ``pyfastent.compat.information_flow``: ``compute_entropy``,
  ``entropy_normalization`` and ``normalize`` of the "Layer by Layer" code
  (Skean et al., ICML 2025, OFSkean/information_flow); nats, with that
  code's clamp of the Gram matrix at 0.

Each function says where it comes from and any convention in which it
differs. They are written anew against the published formulas; they are
checked against values the original packages computed
(``tests/fixtures/reference_values.json``, ``representation_values.json``).
"""
