"""Demo: ``python -m hierlm.demo`` fits lme4's sleepstudy model and prints the summary.

The timing line is honest about start-up: ``python -m hierlm.demo`` imports the
``hierlm`` package before this module runs, so the import is timed from the mark
``hierlm/__init__.py`` sets on its first line, and (on Linux) the whole process from
the kernel's record of when it started, interpreter start-up included.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``), or None elsewhere.

    Examples
    --------
    >>> age = process_age()
    >>> age is None or 0 <= age < 1e6
    True
    """
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def main() -> None:
    t_main = time.perf_counter()
    import hierlm

    t_import = t_main - getattr(hierlm, "_IMPORT_STARTED", t_main)
    df = hierlm.load_sleepstudy()
    t_fit = time.perf_counter()
    res = hierlm.fit("Reaction ~ 1 + Days + (1 + Days | Subject)", data=df, method="reml")
    t_fit = time.perf_counter() - t_fit
    print(res.summary())
    age = process_age()
    whole = f"whole process so far {age:.2f} s: " if age is not None else ""
    print(f"\n({whole}import hierlm {t_import:.2f} s, fit {t_fit:.2f} s)")


if __name__ == "__main__":
    main()
