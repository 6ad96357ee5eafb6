"""The command line: ``hierlm fit FORMULA --data FILE`` and ``hierlm demo``.

``hierlm fit`` reads a CSV or Parquet file with pandas (columns typed as pandas reads
them; ``--factor COL`` makes a column a grouping label), fits the model and prints the
summary, or with ``--json`` one JSON object with the keys of :data:`JSON_KEYS`.  Every
error is one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

JSON_KEYS = ("formula", "method", "nobs", "objective", "loglik", "aic", "bic", "sigma",
             "theta", "fixef", "fixef_se", "varcorr")


class CLIError(Exception):
    """A problem with the command line's input, reported as one line."""


def read_data(path: str, factors: list[str]) -> Any:
    """The data file as a DataFrame; ``factors`` become string labels.

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
    if not file.is_file():
        raise CLIError(f"data file not found: {path}")
    suffix = file.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(file)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(file)
        else:
            raise CLIError(f"unknown data file type {suffix!r} ({path}); use .csv or .parquet")
    except CLIError:
        raise
    except ImportError as exc:
        raise CLIError(f"cannot read {path}: {exc}".splitlines()[0]) from None
    except Exception as exc:
        raise CLIError(f"cannot read {path}: {type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    missing = [c for c in factors if c not in frame.columns]
    if missing:
        raise CLIError(f"--factor column(s) not in {path}: {', '.join(missing)}")
    for col in factors:
        frame[col] = frame[col].astype(str).where(frame[col].notna())
    return frame


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
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hierlm", description="Linear mixed models.")
    sub = p.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit a model and print its summary")
    fit.add_argument("formula", help='lme4 formula, e.g. "y ~ x + (1 + x | g)"')
    fit.add_argument("--data", required=True, help="CSV or Parquet file")
    fit.add_argument("--method", default="reml", choices=["reml", "ml", "nuts"])
    fit.add_argument("--factor", action="append", default=[], metavar="COL",
                     help="treat COL as a grouping label (repeatable)")
    fit.add_argument("--json", action="store_true", help="print one JSON object")
    fit.add_argument("--seed", type=int, default=None, help="random seed for NUTS")
    sub.add_parser("demo", help="fit lme4's sleepstudy example")
    return p


def _fit(args: argparse.Namespace) -> None:
    import hierlm

    data = read_data(args.data, args.factor)
    kwargs: dict[str, Any] = {}
    if args.method == "nuts":
        kwargs = {"random_seed": args.seed, "progressbar": False}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = hierlm.fit(args.formula, data, method=args.method, **kwargs)
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
