"""Final-loss prediction from the first 30% of a run, with and without the
learning-rate schedule.

Usage: python benches/science/loss_prediction.py   (or ./scripts/bench-science.sh loss)

Data (benches/science/data/ladder/, see its README): the loss curves of the
Multi-Power Law paper's ladder (Luo et al., 2025; MIT licence): GPT models
of 25M, 100M and 400M parameters, each trained under nine learning-rate
schedules (constant, cosine, WSD, two-stage, ...), 27 runs. The CSVs start
after the 2,160-step linear warmup; its learning rate (0 to 3e-4) is added
back here, as the paper's code defines it.

For each run the fit sees the loss up to 30% of the run's last step and the
learning rate of every step (the schedule is planned in advance). It
predicts the loss at the last step, compared with the logged one:
- steplake `fit_loss_curve(step, loss, lr)` / `predict_loss_curve`, with its
  95% interval;
- steplake `fit_power_law(step, loss)` / `predict_power_law`, the plain
  power law in steps;
- scipy `curve_fit` of the same plain power law, L = E + A·step^(−α).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit

from steplake_cli import Server

DATA = Path(__file__).parent / "data" / "ladder"
WARMUP, PEAK = 2160, 3e-4
PREFIX = 0.3


def load(path: Path) -> np.ndarray:
    return np.genfromtxt(path, delimiter=",", skip_header=1)


def scipy_power_law(steps: np.ndarray, loss: np.ndarray, at: float) -> float:
    law = lambda x, e, a, alpha: e + a * x ** (-alpha)  # noqa: E731
    p, _ = curve_fit(law, steps, loss, p0=[loss.min() * 0.8, 10.0, 0.3],
                     bounds=([0, 0, 0], [np.inf, np.inf, 5]), maxfev=20000)
    return float(law(at, *p))


def main() -> None:
    runs = {p.stem: load(p) for p in sorted(DATA.glob("*.csv"))}
    with Server() as server:
        for run, rows in runs.items():
            csv = ["name,step,value", "lr,0,0.0", f"lr,{WARMUP - 1},{PEAK!r}"]
            for step, lr, loss in rows:
                csv.append(f"lr,{int(step)},{float(lr)!r}")
                csv.append(f"train/loss,{int(step)},{float(loss)!r}")
            server.write(run, "\n".join(csv) + "\n")
        results = server.sql(f"""
            WITH l AS (SELECT run_id, step, value FROM scalars WHERE name = 'train/loss'),
                 r AS (SELECT run_id, step, value AS lr FROM scalars WHERE name = 'lr'),
                 last AS (SELECT run_id, max(step) AS final FROM l GROUP BY run_id),
                 rows AS (SELECT r.run_id, r.step, r.lr,
                                 CASE WHEN r.step <= {PREFIX} * last.final THEN l.value END AS loss
                          FROM r JOIN last ON last.run_id = r.run_id
                          LEFT JOIN l ON l.run_id = r.run_id AND l.step = r.step),
                 fits AS (SELECT run_id, fit_loss_curve(step, loss, lr) AS f FROM rows GROUP BY run_id),
                 plain AS (SELECT l.run_id, fit_power_law(l.step, l.value) AS p
                           FROM l JOIN last ON last.run_id = l.run_id
                           WHERE l.step <= {PREFIX} * last.final GROUP BY l.run_id),
                 predicted AS (SELECT fits.run_id, last.final,
                                      predict_loss_curve(f, last.final) AS lc,
                                      predict_power_law(p, last.final) AS pl
                               FROM fits JOIN last ON last.run_id = fits.run_id
                               JOIN plain ON plain.run_id = fits.run_id)
            SELECT run_id, final, lc['value'] AS lc, lc['lo'] AS lo, lc['hi'] AS hi, pl FROM predicted
            ORDER BY run_id""")

    errors: dict[str, list[float]] = {"fit_loss_curve": [], "fit_power_law": [], "scipy curve_fit": []}
    covered = 0
    print(f"{'run':24s} {'final loss':>10s}  {'fit_loss_curve (95% interval)':>36s} {'covers':>6s}  "
          f"{'fit_power_law':>13s}  {'scipy curve_fit':>15s}")
    for row in results:
        data = runs[row["run_id"]]
        truth = float(data[-1, 2])
        final = float(row["final"])
        prefix = data[data[:, 0] <= PREFIX * final]
        ours, lo, hi, plain = (float(row[k]) for k in ("lc", "lo", "hi", "pl"))
        theirs = scipy_power_law(prefix[:, 0], prefix[:, 2], final)
        inside = lo <= truth <= hi
        covered += inside
        for name, value in (("fit_loss_curve", ours), ("fit_power_law", plain), ("scipy curve_fit", theirs)):
            errors[name].append(abs(value - truth) / truth)
        pct = lambda v: f"{100 * (v - truth) / truth:+.2f}%"  # noqa: E731
        print(f"{row['run_id']:24s} {truth:10.4f}  {ours:8.4f} {pct(ours):>7s} [{lo:.4f}, {hi:.4f}] "
              f"{'yes' if inside else 'no':>6s}  {plain:7.4f} {pct(plain):>7s}  {theirs:7.4f} {pct(theirs):>7s}")
    print()
    print(f"{'method':16s} {'median error':>12s} {'worst error':>12s}")
    for name, e in errors.items():
        print(f"{name:16s} {100 * statistics.median(e):11.2f}% {100 * max(e):11.2f}%")
    print(f"\n95% interval of fit_loss_curve covers the final loss in {covered} of {len(results)} runs")


if __name__ == "__main__":
    main()
