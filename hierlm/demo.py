"""Demo: ``python -m hierlm.demo`` fits lme4's sleepstudy model and prints the summary."""

from __future__ import annotations

import time


def main() -> None:
    t0 = time.perf_counter()
    import hierlm

    df = hierlm.load_sleepstudy()
    res = hierlm.fit("Reaction ~ 1 + Days + (1 + Days | Subject)", data=df, method="reml")
    print(res.summary())
    print(f"\n(import + fit: {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
