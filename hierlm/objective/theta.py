"""Former home of the theta layout, now :mod:`hierlm.covariance.layout` (names re-exported)."""

from hierlm.covariance.layout import (
    psd_cholesky,
    templates,
    theta_from_templates,
    theta_lower,
    theta_start,
    tril_colmajor,
)

__all__ = ["psd_cholesky", "templates", "theta_from_templates", "theta_lower", "theta_start",
           "tril_colmajor"]
