"""How well `is_spike` finds loss spikes in public pretraining logs.

Usage: python benches/science/spikes.py   (or ./scripts/bench-science.sh)

Data (benches/science/data/spikes/, see its README): per-step training loss
of GPT-2 124M and 1B runs from the modded-nanogpt records (MIT licence):
- quiet runs (`quiet-*`), whose loss is averaged over the whole batch;
- spiky runs (`spiky-*`), with sharp one-step spikes on hard batches;
- noisy runs (`noisy-*`), whose logged loss is one GPU's share of the batch.

Ground truth is labelled with hindsight: a point is a spike when it is at
least 1.2 times the median of the 50 points around it (25 before, 25
after, itself excluded). Only points with 25 neighbours on each side are
labelled and scored. The detectors are causal: they see only earlier
points, as a dashboard watching a live run does.

Prints precision, recall and false positives per 10,000 steps for each
detector and run, and whether the default meets the targets (precision and
recall >= 0.9 on spiky and noisy runs, <= 1 false positive per 10,000 steps
on quiet runs).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from steplake_cli import Server

DATA = Path(__file__).parent / "data" / "spikes"
HALF_WINDOW = 25
RATIO = 1.2

# (label, SQL window call) — the first is the default.
DETECTORS = [
    ("default: is_spike(value)", "is_spike(value)"),
    ("ratio, n=50", "is_spike(value, 50)"),
    ("mad k=10, n=20", "is_spike(value, 20, 10, 'mad')"),
    ("zscore k=6, n=50, up", "is_spike(value, 50, 6, 'zscore')"),
    ("old default: zscore k=6, n=50, both", "is_spike(value, 50, 6, 'zscore', 'both')"),
]


def hindsight_spikes(values: np.ndarray) -> np.ndarray:
    """The ground-truth rule, for every point with a full window."""
    n = len(values)
    truth = np.zeros(n, dtype=bool)
    for i in range(HALF_WINDOW, n - HALF_WINDOW):
        around = np.concatenate([values[i - HALF_WINDOW:i], values[i + 1:i + 1 + HALF_WINDOW]])
        truth[i] = values[i] >= RATIO * np.median(around)
    return truth


def main() -> None:
    runs = sorted(p.name.removesuffix(".csv.gz") for p in DATA.glob("*.csv.gz"))
    with Server() as server:
        for run in runs:
            server.write(run, gzip.open(DATA / f"{run}.csv.gz", "rt").read())
        calls = ", ".join(f"{call} OVER w AS d{i}" for i, (_, call) in enumerate(DETECTORS))
        rows = server.sql(
            f"SELECT run_id, step, value, {calls} FROM scalars WHERE name = 'train/loss' "
            "WINDOW w AS (PARTITION BY run_id ORDER BY step) ORDER BY run_id, step"
        )
    by_run: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_run.setdefault(row["run_id"], []).append(row)

    print(f"{'run':28s} {'steps':>6s} {'spikes':>6s}  " + "  ".join(f"{label[:36]:>36s}" for label, _ in DETECTORS))
    print(f"{'':28s} {'':>6s} {'':>6s}  " + "  ".join(f"{'precision recall FP/10k':>36s}" for _ in DETECTORS))
    met = True
    for run in runs:
        points = by_run[run]
        values = np.array([float(p["value"]) for p in points])
        truth = hindsight_spikes(values)
        scored = np.zeros(len(values), dtype=bool)
        scored[HALF_WINDOW:len(values) - HALF_WINDOW] = True
        cells = []
        for i, _ in enumerate(DETECTORS):
            flags = np.array([p[f"d{i}"] == "true" for p in points]) & scored
            tp = int((flags & truth).sum())
            fp = int((flags & ~truth).sum())
            fn = int((~flags & truth).sum())
            precision = tp / (tp + fp) if tp + fp else float("nan")
            recall = tp / (tp + fn) if tp + fn else float("nan")
            fp_rate = 10_000 * fp / scored.sum()
            cells.append(f"{precision:9.2f} {recall:6.2f} {fp_rate:6.1f}")
            if i == 0:
                if run.startswith("quiet"):
                    met &= fp_rate <= 1.0
                else:
                    met &= precision >= 0.9 and recall >= 0.9
        print(f"{run:28s} {len(values):6d} {int(truth.sum()):6d}  " + "  ".join(f"{c:>36s}" for c in cells))
    print(f"\ndefault meets the targets: {'yes' if met else 'NO'}")


if __name__ == "__main__":
    main()
