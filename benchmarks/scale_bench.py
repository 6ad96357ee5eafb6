"""Out-of-core benchmark: a nested design written to parquet partition by partition,
then fitted from the files, on one process or on a Dask ``LocalCluster``.

Usage (from the repository root)::

    python -m benchmarks.scale_bench --rows 1000000                 # parquet chunks
    python -m benchmarks.scale_bench --rows 1000000 --workers 2     # Dask, 2 processes
    python -m benchmarks.scale_bench --rows 50000000 --workers 2 --worker-memory 2GB
    python -m benchmarks.scale_bench --design crossed --rows 10000000   # ml-10m-sized

With ``--data FOLDER --reuse`` the files already in ``FOLDER`` are fitted again (the
same data for 1 and for 2 workers); ``write_s`` is then ``null``.

The design is ``y ~ x1 + x2 + x3 + x4 + (1 | hosp/patient)``: ``rows / 50,000``
hospitals (1,000 for 50M rows), ``rows / 100`` patients (500,000), 100 rows per
patient.  The data are simulated and written one partition of whole hospitals at a
time (``--partition-rows`` rows), by a child process, so neither the writer nor the
fitting process ever holds them whole.  The fitting process (the client, with Dask)
reports the seconds of the level pass, of the Gram pass and of the fit (optimizer
and estimates, including compiling the objective if this structure is new to the
cache), and its peak resident memory (``ru_maxrss``) after the passes and at the
end; with Dask the workers' memory is capped by ``--worker-memory`` and not included.
With ``--design crossed`` the model is ``rating ~ 1 + (1 | user) + (1 | item)``:
``--users`` users (69,878) crossed with ``--items`` items (10,677), the sizes of
MovieLens 10M, written ``--partition-rows`` rows at a time; every user and every item
has a rating, items are drawn with skewed (log-normal) popularity, users uniformly;
a pair may repeat.  Each row also records the load average (1 min) at the start and
the end of the fit, and with Dask the peak resident memory of each worker.
One JSON line goes to stdout and, with ``--out``, to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

FORMULA = "y ~ x1 + x2 + x3 + x4 + (1 | hosp/patient)"
CROSSED = "rating ~ 1 + (1 | user) + (1 | item)"
ML10M_USERS, ML10M_ITEMS = 69_878, 10_677
ROWS_PER_PATIENT = 100
PATIENTS_PER_HOSPITAL = 500


def write_dataset(folder: Path, rows: int, partition_rows: int, seed: int = 1) -> int:
    """Simulate the nested design and write it as ``part-*.parquet``; the number of files.

    Truth: beta = (10, 1, -1, 0.5, 0), sd(hospital) = 1, sd(patient) = 0.5, sigma = 1.
    """
    folder.mkdir(parents=True, exist_ok=True)
    per_hosp = ROWS_PER_PATIENT * PATIENTS_PER_HOSPITAL
    n_hosp = max(2, rows // per_hosp)
    hosp_per_part = max(1, partition_rows // per_hosp)
    rng = np.random.default_rng(seed)
    files = 0
    for start in range(0, n_hosp, hosp_per_part):
        hosps = np.arange(start, min(n_hosp, start + hosp_per_part))
        n = len(hosps) * per_hosp
        hosp = np.repeat(hosps, per_hosp)
        patient = np.repeat(np.arange(len(hosps) * PATIENTS_PER_HOSPITAL)
                            + start * PATIENTS_PER_HOSPITAL, ROWS_PER_PATIENT)
        x = rng.normal(size=(n, 4))
        u_h = rng.normal(size=len(hosps))[hosp - start]
        u_p = 0.5 * rng.normal(size=len(hosps) * PATIENTS_PER_HOSPITAL)[
            patient - start * PATIENTS_PER_HOSPITAL]
        y = 10 + x @ np.array([1.0, -1.0, 0.5, 0.0]) + u_h + u_p + rng.normal(size=n)
        frame = pd.DataFrame({"y": y, "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2],
                              "x4": x[:, 3], "hosp": hosp, "patient": patient})
        frame.to_parquet(folder / f"part-{files:05d}.parquet", row_group_size=1 << 18)
        files += 1
    return files


def write_crossed(folder: Path, rows: int, partition_rows: int, users: int, items: int,
                  seed: int = 2) -> int:
    """Simulate the crossed design and write it as ``part-*.parquet``; the number of files.

    Truth: intercept 3.5, sd(user) = 0.4, sd(item) = 0.6, sigma = 0.9.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    u_eff = 0.4 * rng.normal(size=users)
    i_eff = 0.6 * rng.normal(size=items)
    pop = rng.lognormal(sigma=1.5, size=items)
    pop /= pop.sum()
    first_u, first_i = rng.permutation(users), rng.permutation(items)
    files = 0
    for start in range(0, rows, partition_rows):
        n = min(partition_rows, rows - start)
        user = rng.integers(0, users, n)
        item = rng.choice(items, size=n, p=pop)
        idx = np.arange(start, start + n)  # every level once, in the first rows written
        lead = idx < users
        user[lead] = first_u[idx[lead]]
        lead = idx < items
        item[lead] = first_i[idx[lead]]
        rating = 3.5 + u_eff[user] + i_eff[item] + 0.9 * rng.normal(size=n)
        pd.DataFrame({"rating": rating, "user": user, "item": item}).to_parquet(
            folder / f"part-{files:05d}.parquet", row_group_size=1 << 18)
        files += 1
    return files


def _worker_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fit_from(folder: Path, workers: int, worker_memory: str, formula: str = FORMULA) -> dict:
    """Fit from the files; seconds of each pass, of the fit, and peak RSS of this process."""
    import hierlm  # noqa: F401  (import time is not the fit's)
    from hierlm.estimate.frequentist import fit_profiled
    from hierlm.heap import gc_paused, large_temporaries_reused
    from hierlm.inference.blas import one_blas_thread
    from hierlm.objective.gram_sources import design_and_gram_out_of_core
    from hierlm.objective.profiled import compile_objective

    timings: dict[str, float] = {}
    cluster = client = None
    source: object = str(folder)
    if workers:
        import dask.dataframe as dd
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               memory_limit=worker_memory, dashboard_address=None)
        client = Client(cluster)
        source = dd.read_parquet(str(folder), split_row_groups=True)
    try:
        t0 = time.perf_counter()
        load0 = os.getloadavg()[0]
        design, gram = design_and_gram_out_of_core(formula, source, timings=timings)
        t1 = time.perf_counter()
        rss_passes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"passes_s": round(t1 - t0, 2), **{k: round(v, 2) for k, v in
                                                            timings.items()},
                          "peak_rss_after_passes_mb": round(rss_passes, 1)}),
              file=sys.stderr, flush=True)  # so that a fit stopped early still tells them
        # as hierlm.fit runs it: one BLAS thread (OpenBLAS's two threads spin-wait on 2
        # busy cores: 76% of a 10M-row evaluation's samples in exec_blas and
        # blas_thread_server, 15% in dgemm), freed temporaries reused, collector paused
        with gc_paused(), one_blas_thread(), large_temporaries_reused(gram.m):
            res = fit_profiled(compile_objective(design, gram), reml=True)
        t2 = time.perf_counter()
        load1 = os.getloadavg()[0]
        workers_mb = ([round(v, 1) for v in client.run(_worker_peak_mb).values()]
                      if client is not None else None)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    return {"nobs": design.nobs, "groups": res.groups, "passes_s": round(t1 - t0, 2),
            "levels_s": round(timings["levels_s"], 2), "gram_s": round(timings["gram_s"], 2),
            "fit_s": round(t2 - t1, 2), "n_evals": res.n_evals,
            "converged": bool(res.converged), "optimizer": res.optimizer.get("method"),
            "peak_rss_after_passes_mb": round(rss_passes, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "worker_peak_rss_mb": workers_mb, "load_1min_start": round(load0, 2),
            "load_1min_end": round(load1, 2),
            "fixef": res.fixef.round(4).to_dict(), "sigma": round(res.sigma, 4),
            "theta": np.round(res.theta, 4).tolist()}


COLUMNS = [("design", "design"), ("rows", "rows"), ("groups", "levels"),
           ("workers", "Dask workers"), ("worker_memory", "worker limit"),
           ("levels_s", "level pass (s)"), ("gram_s", "Gram pass (s)"), ("fit_s", "fit (s)"),
           ("n_evals", "evaluations"), ("peak_rss_mb", "client peak RSS (MB)"),
           ("worker_peak_rss_mb", "worker peak RSS (MB)"),
           ("load_1min_start", "load (1 min) at start"), ("load_1min_end", "at end"),
           ("converged", "converged"), ("optimizer", "optimizer"), ("date", "date"),
           ("note", "note")]


def table(rows: list[dict]) -> str:
    """The rows of ``scale_results.jsonl`` as a Markdown table (``--table``)."""
    def cell(row: dict, key: str) -> str:
        v = row.get(key, "nested" if key == "design" else None)
        if v is None:
            return "—" if key != "workers" else "0"
        if key == "groups":
            return " × ".join(f"{k} {n:,}" for k, n in v.items())
        if key == "rows":
            return f"{v:,}"
        if key == "workers":
            return str(v) if v else "none (parquet chunks)"
        if isinstance(v, list):
            return ", ".join(str(x) for x in v)
        return str(v)

    head = "| " + " | ".join(t for _, t in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(cell(r, k).replace("|", "/") for k, _ in COLUMNS) + " |"
            for r in rows]
    return "\n".join([head, rule, *body]) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--partition-rows", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=0, help="0: parquet chunks, no Dask")
    ap.add_argument("--worker-memory", default="2GB")
    ap.add_argument("--data", type=Path, default=None, help="folder for the parquet files")
    ap.add_argument("--reuse", action="store_true", help="fit the files already in --data")
    ap.add_argument("--design", choices=("nested", "crossed"), default="nested")
    ap.add_argument("--users", type=int, default=ML10M_USERS)
    ap.add_argument("--items", type=int, default=ML10M_ITEMS)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--fit-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--table", type=Path, default=None,
                    help="print the rows of this .jsonl file as a Markdown table and exit")
    args = ap.parse_args(argv)
    if args.table is not None:
        lines = args.table.read_text().splitlines()
        print(table([json.loads(line) for line in lines if line.strip()]), end="")
        return
    if args.fit_only:  # the child process: fit and print one JSON line
        formula = CROSSED if args.design == "crossed" else FORMULA
        print(json.dumps(fit_from(args.data, args.workers, args.worker_memory, formula)))
        return
    folder = args.data or Path(tempfile.mkdtemp(prefix="hierlm_scale_")) / args.design
    t0 = time.perf_counter()
    write_s: float | None = None
    if args.reuse and folder.is_dir():
        files = len(list(folder.glob("part-*.parquet")))
    else:
        files = (write_crossed(folder, args.rows, args.partition_rows, args.users, args.items)
                 if args.design == "crossed"
                 else write_dataset(folder, args.rows, args.partition_rows))
        write_s = round(time.perf_counter() - t0, 2)
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale_bench", "--fit-only", "--data", str(folder),
         "--workers", str(args.workers), "--worker-memory", args.worker_memory,
         "--design", args.design],
        stdout=subprocess.PIPE, text=True, check=True)  # stderr: the passes, as they end
    row = {"design": args.design, "rows": args.rows, "files": files, "write_s": write_s,
           "workers": args.workers, "worker_memory": args.worker_memory if args.workers
           else None, **json.loads(child.stdout.strip().splitlines()[-1]),
           "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
           "nice": os.nice(0), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    line = json.dumps(row)
    print(line)
    if args.out is not None:
        with args.out.open("a") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
