"""Covariance layer: the theta layout and each random term's covariance structure.

Between the design and the objective: :mod:`~hierlm.covariance.layout` packs the
templates into theta, :mod:`~hierlm.covariance.parameters` maps theta to SDs and
correlations, and one class per structure (``us``, ``diag``, ``cs``, ``ar1``, ``toep`` and
their homogeneous / heterogeneous variants) maps its own parameters ``psi`` to the
term's template; :class:`~hierlm.covariance.design.DesignCovariance` joins the terms.
"""
