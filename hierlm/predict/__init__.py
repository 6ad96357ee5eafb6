"""After the fit: predictions, simulated responses and the implied marginal moments.

Every function takes a :class:`~hierlm.FitResult` and codes new rows with the
design's :class:`~hierlm.design.newdata.NewDataCoder`, so they also work on a
result read back with :func:`hierlm.load`.
"""
