"""Former home of the theta <-> SD/correlation map, now :mod:`hierlm.covariance.parameters`."""

from hierlm.covariance.parameters import parameter_names, sdcor_from_theta, theta_from_sdcor

__all__ = ["parameter_names", "sdcor_from_theta", "theta_from_sdcor"]
