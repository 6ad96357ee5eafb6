"""Contract: the covariance layer owns theta's layout and the parameters' names.

Outside ``hierlm/covariance/`` no module may

* import or call ``tril_colmajor`` (theta's packing of a template), nor take a
  triangle's indices from numpy (``np.tril_indices``, ``np.triu_indices``): they ask a
  term's covariance object (``Covariance.template_index``, ``pack``, ``unpack``,
  ``diagonal_index``, ``DesignCovariance.split_theta``, ...) or, in shape-only graph
  code, :class:`hierlm.covariance.term_layout.TermLayout`;
* build a parameter's or a posterior variable's name with an f-string (``sd_``,
  ``cor_``, ``corr_``, ``chol_corr_``, ``r_``, ``rho_``, ``pacf_`` before a value;
  ``_term``, ``_pair``, ``_lag``, ``_level`` after one; ``_`` joined to a term's label):
  they call :mod:`hierlm.covariance.names`.

The source is parsed (``ast``), so the check sees code, not comments or docstrings.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import hierlm

PACKAGE = Path(hierlm.__file__).resolve().parent
OWNER = "covariance"
FORBIDDEN_NAMES = {"tril_colmajor", "tril_indices", "triu_indices", "tril_indices_from",
                   "triu_indices_from"}
PREFIXES = ("sd_", "cor_", "corr_", "chol_corr_", "r_", "rho_", "pacf_")
SUFFIXES = ("_term", "_pair", "_lag", "_level")
LABELS = {"label", "lab", "group"}
_PREFIX = re.compile(r"(^|[^A-Za-z0-9_])(" + "|".join(PREFIXES) + r")$")


def _is_label(node: ast.AST) -> bool:
    """A formatted value that is a term's label: ``label``, ``lab``, ``t.group``."""
    if isinstance(node, ast.FormattedValue):
        node = node.value
    if isinstance(node, ast.Name):
        return node.id in LABELS
    return isinstance(node, ast.Attribute) and node.attr in LABELS


def _name_fstring(node: ast.JoinedStr) -> str | None:
    """Why ``node`` builds a parameter or posterior name, or None."""
    vals = node.values
    for i, v in enumerate(vals):
        if not (isinstance(v, ast.Constant) and isinstance(v.value, str)):
            continue
        s = v.value
        before = vals[i - 1] if i > 0 else None
        after = vals[i + 1] if i + 1 < len(vals) else None
        if isinstance(after, ast.FormattedValue) and _PREFIX.search(s):
            return f"prefix {s!r}"
        if isinstance(before, ast.FormattedValue) and s.startswith(SUFFIXES):
            return f"suffix {s!r}"
        if s == "_" and any(x is not None and _is_label(x) for x in (before, after)):
            return "'_' joined to a label"
    return None


def violations(package: Path = PACKAGE) -> list[str]:
    """Every place outside the covariance layer that indexes theta's layout itself or
    spells a parameter's name."""
    out = []
    for f in sorted(package.rglob("*.py")):
        rel = f.relative_to(package.parent)
        if rel.parts[1] == OWNER:
            continue
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    if a.name in FORBIDDEN_NAMES:
                        out.append(f"{rel}:{node.lineno}: imports {a.name}")
            elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_NAMES:
                out.append(f"{rel}:{node.lineno}: uses .{node.attr}")
            elif isinstance(node, ast.JoinedStr):
                why = _name_fstring(node)
                if why:
                    out.append(f"{rel}:{node.lineno}: f-string name ({why}): "
                               f"{ast.unparse(node)}")
    return out


def test_only_the_covariance_layer_knows_theta_layout_and_names() -> None:
    found = violations()
    assert not found, ("theta's layout or a parameter's name spelt outside hierlm/covariance/:\n"
                       + "\n".join(found))


@pytest.mark.parametrize("source, caught", [
    ("from hierlm.covariance.layout import tril_colmajor", True),
    ("import numpy as np\nr, c = np.tril_indices(3)", True),
    ("x = f'sd_{label}'", True),
    ("x = f'{label}_pair'", True),
    ("x = f'{name}_{label}'", True),
    ("x = f'cor_{a}.{b}|{g}'", True),
    ("x = f'{t.group}_level'", True),
    ("x = f'largest r_hat {rhat:.3f}'", False),
    ("x = f'{name}_{i}'", False),
    ("x = f'sd_scale{i}'", False),
])
def test_the_check_sees_each_pattern(tmp_path: Path, source: str, caught: bool) -> None:
    pkg = tmp_path / "hierlm"
    (pkg / "estimate").mkdir(parents=True)
    (pkg / "estimate" / "m.py").write_text(source + "\n")
    (pkg / OWNER).mkdir()
    (pkg / OWNER / "m.py").write_text(source + "\n")  # the owner may
    assert bool(violations(pkg)) is caught
