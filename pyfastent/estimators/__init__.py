"""Estimator families: each turns variables into their joint entropy."""
from pyfastent.estimators.base import Estimator, Prepared
from pyfastent.estimators.discrete import Discrete
from pyfastent.estimators.logdet import LogDet
from pyfastent.estimators.renyi import Renyi

__all__ = ["Estimator", "Prepared", "Renyi", "LogDet", "Discrete"]
