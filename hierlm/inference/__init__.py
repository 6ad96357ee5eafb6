"""Stage 5: inference after a fit (tests, degrees of freedom, intervals, bootstrap).

Each module holds one concept; :class:`hierlm.FitResult`'s methods are thin
wrappers that import from here when called.
"""
