"""The command line: ``hierlm fit FORMULA --data FILE`` and ``hierlm demo``.

``hierlm fit`` reads a CSV or Parquet file with pandas (columns typed as pandas reads
them; ``--factor COL`` makes a column a grouping label), fits the model and prints the
summary, or with ``--json`` one JSON object with the keys of :data:`JSON_KEYS` (the
coefficient table with Satterthwaite's df and p-values among them, as ``summary()``).
A delimited text file's separator (comma, semicolon, tab or bar) is detected from its
first lines (``csv.Sniffer``) unless ``--sep`` names it; in a file not separated by
commas, text columns whose every value is a number written with a decimal comma
(``249,56``, a comma-decimal locale's export) are read as numbers unless ``--decimal``
says otherwise.  Every error is one line on
stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Any

JSON_KEYS = ("formula", "method", "nobs", "objective", "loglik", "aic", "bic", "sigma",
             "theta", "fixef", "fixef_se", "varcorr", "ddf", "coef_table")

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
SEPARATORS = ",;\t|"
_COMMA_NUMBER = re.compile(r"^\s*[+-]?(\d+,\d*|\d*,\d+|\d+)([eE][+-]?\d+)?\s*$")
_SEP_NAMES = {"\\t": "\t", "tab": "\t", "\t": "\t"}


class CLIError(Exception):
    """A problem with the command line's input, reported as one line."""


def detect_sep(file: Path) -> str:
    """The field separator of a delimited text file: comma, semicolon, tab or bar.

    ``csv.Sniffer`` reads the first complete lines (up to 64 KiB); a file it cannot
    decide on (a single column, say) is read as comma-separated.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "d.csv"
    >>> _ = f.write_text("y;g\\n1,5;1\\n2,5;2\\n")
    >>> detect_sep(f)
    ';'
    """
    with open(file, encoding="utf-8", errors="replace", newline="") as handle:
        sample = handle.read(65536)
    if len(sample) == 65536 and "\n" in sample:
        sample = sample[:sample.rindex("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=SEPARATORS).delimiter
    except csv.Error:
        return ","


def _comma_decimals(frame: Any) -> bool:
    """Whether some text column holds only numbers with a decimal comma."""
    for col in frame.columns:
        values = frame[col].dropna()
        if values.empty or frame[col].dtype.kind in "biufcmM":
            continue
        text = values.astype(str)
        if text.str.contains(",", regex=False).any() and text.str.match(_COMMA_NUMBER).all():
            return True
    return False


def read_data(path: str, factors: list[str], sep: str | None = None,
              decimal: str | None = None) -> Any:
    """The data file as a DataFrame; ``factors`` become string labels.

    ``sep`` is the field separator of a text file (detected when None); ``decimal`` its
    decimal mark (``.``, or ``,`` where a text column's values are all numbers with
    a decimal comma and the separator is not a comma).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "d.csv"
    >>> _ = f.write_text("y,g\\n1.5,1\\n2.5,2\\n")
    >>> read_data(str(f), ["g"])["g"].tolist()
    ['1', '2']
    """
    import pandas as pd

    file = Path(path)
    if file.is_dir():
        raise CLIError(f"{path} is a directory, not a data file; give a CSV or Parquet file")
    if not file.is_file():
        raise CLIError(f"data file not found: {path}")
    suffix = file.suffix.lower()
    if sep is not None:
        sep = _SEP_NAMES.get(sep, sep)
        if suffix not in TEXT_SUFFIXES:
            raise CLIError(f"--sep applies to delimited text files ({', '.join(TEXT_SUFFIXES)}),"
                           f" not {suffix or 'a file without a suffix'} ({path})")
        if len(sep) != 1:
            raise CLIError(f"--sep must be one character (or '\\t'), got {sep!r}")
    if decimal is not None and decimal not in (".", ","):
        raise CLIError(f"--decimal must be '.' or ',', got {decimal!r}")
    if decimal is not None and suffix not in TEXT_SUFFIXES:
        raise CLIError(f"--decimal applies to delimited text files, not {path}")
    try:
        if suffix in TEXT_SUFFIXES:
            sep = sep if sep is not None else detect_sep(file)
            frame = pd.read_csv(file, sep=sep, decimal=decimal or ".")
            if decimal is None and sep != "," and _comma_decimals(frame):
                frame = pd.read_csv(file, sep=sep, decimal=",")
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(file)
        else:
            raise CLIError(f"unknown data file type {suffix!r} ({path}); use "
                           f"{', '.join(TEXT_SUFFIXES)} or .parquet")
    except CLIError:
        raise
    except ImportError as exc:
        raise CLIError(f"cannot read {path}: {exc}".splitlines()[0]) from None
    except Exception as exc:
        raise CLIError(f"cannot read {path}: {type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    missing = [c for c in factors if c not in frame.columns]
    if missing:
        raise CLIError(f"--factor column(s) not in {path}: {', '.join(missing)}; "
                       f"{what_was_read(frame)}")
    for col in factors:
        frame[col] = frame[col].astype(str).where(frame[col].notna())
    return frame


def what_was_read(frame: Any, limit: int = 20) -> str:
    """The columns read, named for an error message, with a ``--sep`` hint when the file
    came out as one column whose name holds a likely separator.

    Examples
    --------
    >>> import pandas as pd
    >>> what_was_read(pd.DataFrame({"y;g": [1]}))
    "read 1 column: 'y;g' (is the file separated by ';'? use --sep ';')"
    """
    cols = [str(c) for c in frame.columns]
    shown = ", ".join(repr(c) for c in cols[:limit]) + (", ..." if len(cols) > limit else "")
    text = f"read {len(cols)} column{'' if len(cols) == 1 else 's'}: {shown}"
    if len(cols) == 1:
        counts = {c: cols[0].count(c) for c in SEPARATORS if c in cols[0]}
        if counts:
            best = max(counts, key=lambda c: counts[c])
            shown_sep = "\\t" if best == "\t" else best
            text += f" (is the file separated by {shown_sep!r}? use --sep '{shown_sep}')"
    return text


def _number(x: float) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    x = float(x)
    return x if math.isfinite(x) else None


def result_json(res: Any) -> dict[str, Any]:
    """The fit as plain JSON values, keys :data:`JSON_KEYS`."""
    varcorr = [{k: (_number(v) if isinstance(v, float) else v) for k, v in row.items()}
               for row in res.varcorr.to_dict(orient="records")]
    return {
        "formula": res.formula, "method": res.method, "nobs": int(res.nobs),
        "objective": _number(res.objective), "loglik": _number(res.loglik),
        "aic": _number(res.aic), "bic": _number(res.bic), "sigma": _number(res.sigma),
        "theta": [_number(t) for t in res.theta],
        "fixef": {k: _number(v) for k, v in res.fixef.items()},
        "fixef_se": {k: _number(v) for k, v in res.fixef_se.items()},
        "varcorr": varcorr,
        **coef_json(res),
    }


def coef_json(res: Any) -> dict[str, Any]:
    """``ddf`` and ``coef_table``: the fixed effects with the t tests of ``summary()``.

    Rows ``term, estimate, se, df, t, p``.  REML and ML fits use Satterthwaite's df
    (lmerTest's); a fit they cannot be computed for (no model, say) falls back to z
    tests (``ddf`` "none", df null: infinite).  A NUTS fit has posterior means and SDs,
    with ``ddf`` null and df, t, p null.
    """
    if res.is_posterior:
        rows = [{"term": k, "estimate": _number(res.fixef[k]), "se": _number(res.fixef_se[k]),
                 "df": None, "t": None, "p": None} for k in res.fixef.index]
        return {"ddf": None, "coef_table": rows}
    from hierlm.errors import HierlmError

    ddf = "satterthwaite"
    try:
        table = res.coef_table(ddf)
    except HierlmError:
        ddf = "none"
        table = res.coef_table(ddf)
    rows = [{"term": str(term), **{k: _number(row[k]) for k in ("estimate", "se", "df", "t", "p")}}
            for term, row in table.iterrows()]
    return {"ddf": ddf, "coef_table": rows}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hierlm", description="Linear mixed models.")
    sub = p.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit a model and print its summary")
    fit.add_argument("formula", help='lme4 formula, e.g. "y ~ x + (1 + x | g)"')
    fit.add_argument("--data", required=True,
                     help="CSV (or .tsv, .txt) or Parquet file")
    fit.add_argument("--sep", default=None, metavar="CHAR",
                     help="field separator of a text file (default: detected; '\\t' for tab)")
    fit.add_argument("--method", default="reml", choices=["reml", "ml", "nuts"])
    fit.add_argument("--decimal", default=None, choices=[".", ","],
                     help="decimal mark of a text file (default: '.', or ',' where every "
                          "value of a text column is a number with a decimal comma)")
    fit.add_argument("--factor", action="append", default=[], metavar="COL",
                     help="treat COL as a grouping label (repeatable)")
    fit.add_argument("--json", action="store_true", help="print one JSON object")
    fit.add_argument("--seed", type=int, default=None, help="random seed for NUTS")
    sub.add_parser("demo", help="fit lme4's sleepstudy example")
    return p


def _fit(args: argparse.Namespace) -> None:
    import hierlm
    from hierlm.errors import DataError
    from hierlm.estimate.registry import estimator

    data = read_data(args.data, args.factor, args.sep, args.decimal)
    kwargs: dict[str, Any] = {}
    if estimator(args.method).kind.posterior:  # a sampler: seeded, no progress bar
        kwargs = {"random_seed": args.seed, "progressbar": False}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = hierlm.fit(args.formula, data, method=args.method, **kwargs)
        except DataError as exc:
            text = str(exc).splitlines()[0] if str(exc) else ""
            if "not found in data" not in text:
                raise
            raise CLIError(f"{text}; {args.data}: {what_was_read(data)}") from None
    for w in caught:
        print(f"warning: {str(w.message).splitlines()[0]}", file=sys.stderr)
    if args.json:
        print(json.dumps(result_json(res), indent=1))
    else:
        print(res.summary())


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Examples
    --------
    >>> main(["fit", "y ~ (1 | g)", "--data", "no-such-file.csv"])
    2
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its usage line
        return int(exc.code or 0)
    try:
        if args.command == "demo":
            from hierlm.demo import main as demo

            demo()
        else:
            _fit(args)
    except CLIError as exc:
        print(f"hierlm: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # hierlm's own errors and anything unforeseen: one line
        from hierlm.errors import HierlmError

        kind = "error" if isinstance(exc, HierlmError) else f"error ({type(exc).__name__})"
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"hierlm: {kind}: {text}", file=sys.stderr)
        return 2 if isinstance(exc, HierlmError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
