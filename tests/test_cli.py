"""The command line: JSON output against lme4, CSV and Parquet input, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hierlm.cli import JSON_KEYS, main
from tests.conftest import REFERENCE, dataset, reference, reference_file

FORMULA = "Reaction ~ 1 + Days + (1 + Days | Subject)"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def check_json(out: str) -> None:
    doc = json.loads(out)
    assert tuple(doc) == JSON_KEYS
    ref = reference()["sleepstudy_slopes_reml"]
    assert doc["nobs"] == 180 and doc["method"] == "REML"
    assert doc["objective"] == pytest.approx(ref["deviance_or_reml"], rel=1e-7)
    assert doc["fixef"] == pytest.approx(ref["fixef"], rel=1e-6)
    assert doc["fixef_se"] == pytest.approx(ref["se"], rel=1e-4)
    assert doc["theta"] == pytest.approx(ref["theta"], rel=1e-3)
    assert doc["sigma"] == pytest.approx(ref["sigma"], rel=1e-5)
    assert [r["sd_or_corr"] for r in doc["varcorr"]] == pytest.approx(
        [r["sdcor"] for r in ref["varcorr"]], rel=2e-3)


def test_csv_json_matches_lme4(capsys: pytest.CaptureFixture[str]) -> None:
    csv = REFERENCE / "data" / "sleepstudy.csv"
    code, out, err = _run(capsys, "fit", FORMULA, "--data", str(csv), "--factor", "Subject",
                          "--json")
    assert code == 0, err
    check_json(out)


def test_parquet_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    file = tmp_path / "sleep.parquet"
    dataset("sleepstudy").to_parquet(file)
    code, out, err = _run(capsys, "fit", FORMULA, "--data", str(file), "--json")
    assert code == 0, err
    check_json(out)


def test_summary_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    csv = REFERENCE / "data" / "sleepstudy.csv"
    code, out, _ = _run(capsys, "fit", FORMULA, "--data", str(csv), "--factor", "Subject")
    assert code == 0
    assert out.startswith("Linear mixed model fit by REML")


@pytest.mark.parametrize("formula,data,message", [
    ("Reaction ~ Days + (1 | Subjet)", "sleepstudy.csv", "column(s) not found in data: Subjet"),
    ("Reaction ~ Days + (1 | Subject", "sleepstudy.csv", "unclosed '('"),
    (FORMULA, "missing.csv", "data file not found"),
])
def test_errors_are_one_line(formula: str, data: str, message: str) -> None:
    path = REFERENCE / "data" / data
    proc = subprocess.run([sys.executable, "-m", "hierlm", "fit", formula, "--data", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hierlm: error") and message in lines[0]


def test_unknown_factor_column(capsys: pytest.CaptureFixture[str]) -> None:
    csv = REFERENCE / "data" / "sleepstudy.csv"
    code, _, err = _run(capsys, "fit", FORMULA, "--data", str(csv), "--factor", "subject")
    assert code == 2 and "--factor column(s) not in" in err


def _sleep_csv(tmp_path: Path, sep: str, name: str = "sleep.csv") -> Path:
    file = tmp_path / name
    dataset("sleepstudy").to_csv(file, sep=sep, index=False)
    return file


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_delimiter_is_detected(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                               sep: str) -> None:
    file = _sleep_csv(tmp_path, sep)
    code, out, err = _run(capsys, "fit", FORMULA, "--data", str(file), "--factor", "Subject",
                          "--json")
    assert code == 0, err
    check_json(out)


def test_sep_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    file = _sleep_csv(tmp_path, ";")
    code, out, err = _run(capsys, "fit", FORMULA, "--data", str(file), "--factor", "Subject",
                          "--sep", ";", "--json")
    assert code == 0, err
    check_json(out)


def test_wrong_sep_says_what_was_read(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    file = _sleep_csv(tmp_path, ";")
    code, out, err = _run(capsys, "fit", FORMULA, "--data", str(file), "--sep", ",")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "column(s) not found in data: Days, Reaction, Subject" in lines[0]
    assert "read 1 column: 'Reaction;Days;Subject'" in lines[0]
    assert "--sep ';'" in lines[0]


def test_missing_column_lists_the_columns_read(capsys: pytest.CaptureFixture[str]) -> None:
    csv = REFERENCE / "data" / "sleepstudy.csv"
    code, _, err = _run(capsys, "fit", "Reaction ~ Days + (1 | Subjet)", "--data", str(csv))
    assert code == 2
    assert "read 3 columns: 'Reaction', 'Days', 'Subject'" in err and "--sep" not in err


def test_directory_is_not_called_missing(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    code, _, err = _run(capsys, "fit", FORMULA, "--data", str(tmp_path))
    assert code == 2
    assert "not found" not in err
    assert f"{tmp_path} is a directory, not a data file" in err


def test_json_has_satterthwaite_df_and_p(capsys: pytest.CaptureFixture[str]) -> None:
    csv = REFERENCE / "data" / "sleepstudy.csv"
    code, out, err = _run(capsys, "fit", FORMULA, "--data", str(csv), "--factor", "Subject",
                          "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["ddf"] == "satterthwaite"
    ref = {r["term"]: r for r in reference_file("lme4_inference.json")
           ["sleepstudy_slopes"]["coef_satterthwaite"]}
    assert [r["term"] for r in doc["coef_table"]] == list(ref)
    for row in doc["coef_table"]:
        want = ref[row["term"]]
        assert list(row) == ["term", "estimate", "se", "df", "t", "p"]
        for key in ("estimate", "se", "df", "t", "p"):
            assert row[key] == pytest.approx(want[key], rel=2e-3), (row["term"], key)


def test_semicolon_csv_with_decimal_commas(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    """The spreadsheet export of a comma-decimal locale: ';' between fields, ',' in numbers."""
    file = tmp_path / "sleep.csv"
    dataset("sleepstudy").to_csv(file, sep=";", decimal=",", index=False)
    assert "249,56" in file.read_text()
    code, out, err = _run(capsys, "fit", FORMULA, "--data", str(file), "--factor", "Subject",
                          "--json")
    assert code == 0, err
    check_json(out)
    code, out, err = _run(capsys, "fit", FORMULA, "--data", str(file), "--factor", "Subject",
                          "--json", "--decimal", ",")
    assert code == 0, err
    check_json(out)


def test_json_of_a_nuts_fit_has_posterior_moments_and_no_tests() -> None:
    import warnings

    import hierlm
    from hierlm.cli import result_json

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("Reaction ~ Days + (Days | Subject)", dataset("sleepstudy"),
                         method="nuts", draws=50, tune=50, chains=1, random_seed=1,
                         progressbar=False, sampler="pymc", cores=1)
    doc = json.loads(json.dumps(result_json(res)))
    assert tuple(doc) == JSON_KEYS and doc["ddf"] is None
    beta = res.idata["posterior"]["beta"]
    for row in doc["coef_table"]:
        draws = beta.sel(coef=row["term"]).values.ravel()
        assert row["estimate"] == pytest.approx(draws.mean(), rel=1e-12)
        assert row["se"] == pytest.approx(draws.std(ddof=1), rel=1e-6)
        assert row["df"] is None and row["p"] is None
