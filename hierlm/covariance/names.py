"""The names of the covariance parameters: lme4's and the posterior's, spelt here only.

lme4's names (``confint(fit, oldNames = FALSE)``) are ``sd_<coef>|<group>`` for an SD
and ``cor_<coef_k>.<coef_j>|<group>`` for a correlation (:func:`parameter_name`).  A
NUTS posterior names its variables by the term's label (``varcorr``'s group label,
``Subject``, ``Subject.1``): ``sd_<label>``, ``corr_<label>``, the sampled Cholesky
factor ``chol_corr_<label>``, a structure's correlation parameters ``rho_<label>`` and
``pacf_<label>``, the random effects ``r_<label>``; their dimensions are
``<label>_term`` (coefficients), ``<label>_pair`` (correlations, pairs ``j < k`` in
:func:`corr_pairs` order), ``<label>_lag`` (a Toeplitz term's lags) and
``<group>_level`` (levels of the grouping factor) (:func:`posterior_name`).
"""

from __future__ import annotations

from collections.abc import Sequence

#: Posterior variables and dimensions, by kind: ``{}`` is the term's label.
POSTERIOR: dict[str, str] = {
    "sd": "sd_{}", "corr": "corr_{}", "chol_corr": "chol_corr_{}", "rho": "rho_{}",
    "pacf": "pacf_{}", "ranef": "r_{}", "term": "{}_term", "pair": "{}_pair",
    "lag": "{}_lag", "level": "{}_level",
}


def posterior_name(kind: str, label: str) -> str:
    """The name of a term's posterior variable or dimension of ``kind`` (see
    :data:`POSTERIOR`).

    Examples
    --------
    >>> posterior_name("sd", "Subject"), posterior_name("pair", "Subject.1")
    ('sd_Subject', 'Subject.1_pair')
    """
    try:
        return POSTERIOR[kind].format(label)
    except KeyError:
        raise ValueError(f"no posterior name of kind {kind!r}; known: "
                         f"{', '.join(POSTERIOR)}") from None


def parameter_name(group: str, coef: str, other: str | None = None) -> str:
    """lme4's name of the SD of ``coef``, or of its correlation with ``other``.

    Examples
    --------
    >>> parameter_name("Subject", "Days"), parameter_name("Subject", "Days", "(Intercept)")
    ('sd_Days|Subject', 'cor_Days.(Intercept)|Subject')
    """
    if other is None:
        return f"sd_{coef}|{group}"
    return f"cor_{coef}.{other}|{group}"


def corr_pairs(p: int) -> list[tuple[int, int]]:
    """Index pairs ``(j, k)``, ``j < k``, of a term's correlations in ``varcorr`` order.

    Examples
    --------
    >>> corr_pairs(3)
    [(0, 1), (0, 2), (1, 2)]
    """
    return [(j, k) for j in range(p) for k in range(j + 1, p)]


def pair_labels(coef_names: Sequence[str]) -> list[str]:
    """Coordinates of a term's ``<label>_pair`` dimension: ``"a, b"`` per pair.

    Examples
    --------
    >>> pair_labels(["(Intercept)", "Days"])
    ['(Intercept), Days']
    """
    return [f"{coef_names[j]}, {coef_names[k]}" for j, k in corr_pairs(len(coef_names))]
