"""A formula never runs code: from Python, from the CLI, or from a loaded result.

Each exploit names a sentinel file in ``tmp_path``; before the formula whitelist the
command ran (and created the file) and only then was a FormulaError raised.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.cli import main
from hierlm.errors import FormulaError


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n, k = 120, 12
    g = np.repeat([f"g{i}" for i in range(k)], n // k)
    x = rng.uniform(1.0, 3.0, n)
    z = rng.uniform(0.5, 2.0, n)
    f = rng.choice(["a", "b", "c"], n)
    u = rng.normal(size=k)[np.repeat(np.arange(k), n // k)]
    y = 1.0 + 0.5 * x - 0.3 * z + (f == "b") * 0.4 + u + rng.normal(scale=0.5, size=n)
    return pd.DataFrame({"y": y + 10.0, "x": x, "z": z, "f": f, "g": g})


def _exploits(sentinel: Path) -> list[str]:
    cmd = f"pd.io.common.os.system('touch {sentinel}')"
    return [
        f"y ~ x + {cmd} + (1 | g)",                       # the reported exploit
        f"y ~ x + I({cmd}) + (1 | g)",                    # nested in a whitelisted call
        f"y ~ x + np.log({cmd}) + (1 | g)",
        f"y ~ x + {{{cmd}}} + (1 | g)",                   # formulae's {...} is I(...)
        f"y ~ x + C(f, {cmd}) + (1 | g)",                 # as an argument of C
        f"y ~ x + C(f, levels={cmd}) + (1 | g)",          # as a keyword argument
        f"{cmd} ~ x + (1 | g)",                           # the response
        f"y ~ x + (1 + {cmd} | g)",                       # a random term's left side
        f"y ~ x + (1 + {cmd} || g)",
        f"y ~ x + np.lib.npyio.os.system('touch {sentinel}') + (1 | g)",
        f"y ~ x + os.system('touch {sentinel}') + (1 | g)",
        f"y ~ x + hierlm.design.matrices.pd.io.common.os.system('touch {sentinel}') + (1 | g)",
        f"y ~ x + np.log.__class__.__call__({cmd}) + (1 | g)",
    ]


def test_exploits_are_refused_and_run_nothing(data: pd.DataFrame, tmp_path: Path) -> None:
    sentinel = tmp_path / "M"
    for formula in _exploits(sentinel):
        with pytest.raises(FormulaError) as err:
            hierlm.fit(formula, data)
        assert not sentinel.exists(), formula
        msg = str(err.value)
        if formula.startswith("y ~ x + {"):  # braces are no part of R's formula dialect:
            assert msg.startswith("unexpected '{'"), msg  # refused when the terms are read
        elif formula.startswith("y ~ x + C(f, pd"):  # C()'s contrast is read, never run
            assert "takes no arguments here" in msg, msg
        elif formula.startswith("y ~ x + C(f, levels=pd"):  # so are its levels
            assert "levels must be a list of values" in msg, msg
        else:
            assert "not allowed" in msg, msg
        # the message names the culprit
        assert any(name in msg for name in ("pd.io.common.os.system", "np.lib.npyio.os.system",
                                            "os.system", "np.log.__class__.__call__",
                                            "hierlm.design.matrices")), msg


def test_exploit_via_model_and_build_design(data: pd.DataFrame, tmp_path: Path) -> None:
    sentinel = tmp_path / "M"
    formula = f"y ~ x + pd.io.common.os.system('touch {sentinel}') + (1 | g)"
    with pytest.raises(FormulaError, match="'pd.io.common.os.system' is not allowed"):
        hierlm.Model(formula, data)
    with pytest.raises(FormulaError, match="'pd.io.common.os.system' is not allowed"):
        hierlm.build_design(formula, data)
    assert not sentinel.exists()


def test_exploit_via_cli(data: pd.DataFrame, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    sentinel = tmp_path / "M"
    csv = tmp_path / "d.csv"
    data.to_csv(csv, index=False)
    formula = f"y ~ x + pd.io.common.os.system('touch {sentinel}') + (1 | g)"
    code = main(["fit", formula, "--data", str(csv)])
    _, err = capsys.readouterr()
    assert code != 0
    assert "pd.io.common.os.system" in err and "not allowed" in err
    assert "Traceback" not in err
    assert not sentinel.exists()


def _tamper(folder: Path, old: str, new: str) -> None:
    doc = (folder / "result.json").read_text(encoding="utf-8")
    assert json.dumps(old) in doc
    (folder / "result.json").write_text(doc.replace(json.dumps(old), json.dumps(new)),
                                        encoding="utf-8")


def test_tampered_saved_result_runs_nothing(data: pd.DataFrame, tmp_path: Path) -> None:
    """A result.json whose formula pieces were rewritten: predict() refuses them."""
    pytest.importorskip("h5netcdf")
    sentinel = tmp_path / "M"
    res = hierlm.fit("y ~ x + np.log(z) + (1 | g)", data)
    cmd = f"pd.io.common.os.system('touch {sentinel}')"
    cases = [("x + np.log(z)", f"x + np.log(z) + {cmd}"),   # the coder's fixed part
             ("x + np.log(z)", f"x + np.log({cmd})"),
             ("1", f"1 + {cmd}")]                           # the random term's expression
    for k, (old, new) in enumerate(cases):
        folder = tmp_path / f"r{k}.hierlm"
        res.save(folder)
        _tamper(folder, old, new)
        loaded = hierlm.load(folder)
        for call in (lambda r: r.predict(data.head(5)), lambda r: r.predict(),
                     lambda r: r.simulate(seed=1, newdata=data.head(5))):
            with pytest.raises(FormulaError, match="'pd.io.common.os.system' is not allowed"):
                call(loaded)
            assert not sentinel.exists(), new


@pytest.mark.parametrize("formula, bad", [
    ("y ~ x + foo(x) + (1 | g)", "foo"),
    ("y ~ x + np.random.seed(x) + (1 | g)", "np.random.seed"),
    ("y ~ x + numpy.loadtxt('a') + (1 | g)", "numpy.loadtxt"),
    ("y ~ x + offset(z) + (1 | g)", "offset"),
    ("y ~ x + I(x)(z) + (1 | g)", "I(x)"),
    ("y ~ x + I(x.__class__) + (1 | g)", "x.__class__"),  # bare, x.__class__ is an R name
    ("y ~ x + (1 + __import__('os') | g)", "__import__"),
])
def test_other_calls_are_refused_by_name(data: pd.DataFrame, formula: str, bad: str) -> None:
    with pytest.raises(FormulaError) as err:
        hierlm.fit(formula, data)
    assert repr(bad) in str(err.value) or bad in str(err.value)


def test_check_expression_accepts_data_and_whitelist() -> None:
    from hierlm.design.formula_safety import check_expression

    check_expression("x + z*f + x:f + `odd name` + PCT.x + C(f, Treatment('b'))", "fixed part")
    check_expression("np.log(x) + log(x) + I(x**2) + {x + 1} + scale(x)", "fixed part")
    check_expression("C(f, levels=('a')) + poly(x, 2) - 1 + I(z)", "fixed part")
    with pytest.raises(FormulaError, match="'eval' is not allowed"):
        check_expression("eval('1')", "fixed part")


# --- every whitelisted transform still works -----------------------------------------

# arguments inside each function's domain, with a sign change for np.sign
_ARG = {"arcsin": "I(x / 4)", "arccos": "I(x / 4)", "arctanh": "I(x / 4)", "sign": "I(x - 2)"}
_BINARY = ("power", "maximum", "minimum")


def _fixed_column(data: pd.DataFrame, term: str) -> np.ndarray:
    d = hierlm.build_design(f"y ~ {term} + (1 | g)", data)
    assert d.X.shape[1] == 2, d.fixef_names
    return d.X[:, 1]


def test_numpy_functions_work(data: pd.DataFrame) -> None:
    from hierlm.design.formula_safety import NUMPY_FUNCTIONS

    x = data["x"].to_numpy()
    args = {"I(x / 4)": x / 4, "I(x - 2)": x - 2, "x": x}
    for name in NUMPY_FUNCTIONS:
        fn = getattr(np, name)
        assert isinstance(fn, np.ufunc), name
        arg = _ARG.get(name, "x")
        want = fn(args[arg], 2.0) if name in _BINARY else fn(args[arg])
        for prefix in ("np.", "numpy."):
            term = f"{prefix}{name}({arg}, 2)" if name in _BINARY else f"{prefix}{name}({arg})"
            np.testing.assert_allclose(_fixed_column(data, term), want, rtol=1e-14,
                                       err_msg=term)


@pytest.mark.parametrize("name", ["log", "exp", "sqrt", "log10", "log2", "log1p", "abs"])
def test_r_functions_work(data: pd.DataFrame, name: str) -> None:
    want = getattr(np, name)(data["x"].to_numpy())
    np.testing.assert_allclose(_fixed_column(data, f"{name}(x)"), want, rtol=1e-14)


def test_formulae_transforms_work(data: pd.DataFrame) -> None:
    x = data["x"].to_numpy()
    np.testing.assert_allclose(_fixed_column(data, "I(x**2)"), x**2, rtol=1e-14)
    np.testing.assert_allclose(_fixed_column(data, "I(x + 1)"), x + 1, rtol=1e-14)
    np.testing.assert_allclose(_fixed_column(data, "scale(x)"),
                               (x - x.mean()) / x.std(ddof=1), rtol=1e-12)
    np.testing.assert_allclose(_fixed_column(data, "center(x)"), x - x.mean(), rtol=1e-12)
    np.testing.assert_allclose(_fixed_column(data, "standardize(x)"),
                               (x - x.mean()) / x.std(), rtol=1e-12)
    # poly: orthonormal columns spanning x and x^2 beyond the intercept, as R's poly(x, 2)
    d = hierlm.build_design("y ~ poly(x, 2) + (1 | g)", data)
    P = d.X[:, 1:]
    np.testing.assert_allclose(P.T @ P, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(P.sum(axis=0), 0.0, atol=1e-12)
    Q = np.linalg.qr(np.column_stack([np.ones_like(x), x, x**2]))[0][:, 1:]
    np.testing.assert_allclose(np.abs(P.T @ Q), np.eye(2), atol=1e-10)
    # splines: a cubic B-spline basis (with the intercept) reproduces x, x^2 and x^3; a
    # natural cubic regression spline reproduces x; a cyclic one takes equal values at
    # x and x + period
    for term, powers in (("bs(x, df=5)", (1, 2, 3)), ("cr(x, df=5)", (1,))):
        B = hierlm.build_design(f"y ~ {term} + (1 | g)", data).X
        assert B.shape[1] == 6, term
        for k in powers:
            resid = x**k - B @ np.linalg.lstsq(B, x**k, rcond=None)[0]
            assert np.max(np.abs(resid)) < 1e-9 * np.max(x**k), (term, k)
    res = hierlm.fit("y ~ cc(x, df=4, period=2) + (1 | g)", data)
    new = pd.DataFrame({"x": [1.5, 3.5], "g": ["g0", "g0"]})
    assert res.predict(new)[0] == pytest.approx(res.predict(new)[1], rel=1e-12)
    # C with an encoding, and binary indicators
    fa, fc = (data["f"] == "a").to_numpy(float), (data["f"] == "c").to_numpy(float)
    fb = (data["f"] == "b").to_numpy(float)
    for term in ("C(f, Treatment('b'))", "C(f, levels=['b', 'a', 'c'])"):
        np.testing.assert_array_equal(hierlm.build_design(f"y ~ {term} + (1 | g)", data).X,
                                      np.column_stack([np.ones_like(x), fa, fc]))
    for term in ("C(f, Sum)", "C(f, contr.sum)"):
        np.testing.assert_array_equal(hierlm.build_design(f"y ~ {term} + (1 | g)", data).X,
                                      np.column_stack([np.ones_like(x), fa - fc, fb - fc]))
    np.testing.assert_array_equal(_fixed_column(data, "binary(f, 'c')"),
                                  (data["f"] == "c").to_numpy(float))


def test_transforms_work_in_response_and_random_terms(data: pd.DataFrame) -> None:
    d = hierlm.build_design("np.log(y) ~ x + (1 + scale(z) | g)", data)
    np.testing.assert_allclose(d.y, np.log(data["y"].to_numpy()), rtol=1e-14)
    z = data["z"].to_numpy()
    np.testing.assert_allclose(d.terms[0].X[:, 1], (z - z.mean()) / z.std(ddof=1), rtol=1e-12)


def test_whitelist_is_documented() -> None:
    from hierlm.design.formula_safety import ALLOWED_CALLS

    doc = (Path(__file__).resolve().parent.parent.parent / "docs" / "robustness.md").read_text()
    section = doc.split("## Formulas never run code", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line.split("|")[2] for line in section.splitlines()
            if line.startswith("| ") and line.count("|") == 3}
    numpy_row = next(v for k, v in rows.items() if k.startswith("NumPy"))
    other = " ".join(v for k, v in rows.items() if not k.startswith("NumPy"))
    documented = {f"{p}.{n}" for n in re.findall(r"`(\w+)`", numpy_row) for p in ("np", "numpy")}
    documented |= set(re.findall(r"`(\w+)`", other))
    assert documented == set(ALLOWED_CALLS)


def test_environment_alone_reaches_no_module(data: pd.DataFrame, tmp_path: Path) -> None:
    """The second layer: formulae evaluating with hierlm's environment and no check."""
    import formulae as fm

    from hierlm.design.formula_safety import safe_environment

    sentinel = tmp_path / "M"
    for call in ("pd.io.common.os.system", "np.lib.npyio.os.system", "os.system",
                 "np.sqrt.__class__.__call__", "numpy.os.system"):
        with pytest.raises(Exception):  # noqa: B017 - formulae's KeyError/AttributeError
            fm.design_matrices(f"y ~ {call}('touch {sentinel}')", data,
                               env=safe_environment())
        assert not sentinel.exists(), call
