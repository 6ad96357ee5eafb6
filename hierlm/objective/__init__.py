"""Stage 2: model design -> Gram blocks -> one compiled PyTensor objective graph."""

from hierlm.covariance.layout import templates, theta_lower, theta_start
from hierlm.objective.gram import GramBlocks, compute_gram
from hierlm.objective.profiled import ProfiledObjective, compile_objective

__all__ = ["GramBlocks", "ProfiledObjective", "compile_objective", "compute_gram", "templates",
           "theta_lower", "theta_start"]
