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
- scipy `curve_fit` of the same plain power law, L = E + A·step^(−α);
- steplake `fit_loss_curve(step, loss, lr, prior)`: the same fit with α and
  the annealing coefficient C taken from a prior, the fit of another,
  finished run of the same model size (the reference: `cosine_72000`, and
  for that run itself `cosine_24000`). A prefix without a decay cannot tell
  how much a decay will lower the loss; a finished run of the same setup
  can. A second table shows the result for each choice of the reference
  schedule (predicting the other eight runs of each size);
- steplake `fit_loss_curve(step, loss, lr, loss_curve_prior(...))`: the
  prior combines the full fits of all the other runs of the same size
  (those that annealed: constant-LR runs lend no annealing and are left
  out), an ensemble whose spread enters the interval.
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


REFERENCE = "cosine_72000"
REFERENCE_OF_REFERENCE = "cosine_24000"
REFERENCES = ["cosine_72000", "cosine_24000", "wsd_20000_24000", "wsdld_20000_24000",
              "wsdcon_9", "wsdcon_18", "constant_72000"]


def size_and_schedule(run: str) -> tuple[str, str]:
    size, schedule = run.split("_", 1)
    return size, schedule


def prior_prelude() -> str:
    """The CTEs both prior evaluations share: every run's loss and
    learning rate, its last step, its full fit, and its prefix."""
    return f"""
        l AS (SELECT run_id, step, value FROM scalars WHERE name = 'train/loss'),
        r AS (SELECT run_id, step, value AS lr FROM scalars WHERE name = 'lr'),
        last AS (SELECT run_id, max(step) AS final FROM l GROUP BY run_id),
        everything AS (SELECT r.run_id, r.step, r.lr, l.value AS loss FROM r
                       LEFT JOIN l ON l.run_id = r.run_id AND l.step = r.step),
        full_fits AS (SELECT run_id, fit_loss_curve(step, loss, lr) AS f FROM everything GROUP BY run_id),
        prefix AS (SELECT e.run_id, e.step, e.lr,
                          CASE WHEN e.step <= {PREFIX} * last.final THEN e.loss END AS loss
                   FROM everything e JOIN last ON last.run_id = e.run_id)"""


def predict_with_priors(server: Server, refs: dict[str, str]) -> dict[str, tuple[float, float, float]]:
    """(value, lo, hi) at each run's last step, fitted on its prefix with
    the full fit of `refs[run]` as the prior."""
    pairs = ", ".join(f"('{run}', '{ref}')" for run, ref in sorted(refs.items()))
    rows = server.sql(f"""
        WITH {prior_prelude()},
             refs AS (SELECT column1 AS run_id, column2 AS ref FROM (VALUES {pairs})),
             fits AS (SELECT prefix.run_id, fit_loss_curve(prefix.step, prefix.loss, prefix.lr, full_fits.f) AS f
                      FROM prefix JOIN refs ON refs.run_id = prefix.run_id
                      JOIN full_fits ON full_fits.run_id = refs.ref
                      GROUP BY prefix.run_id),
             predicted AS (SELECT fits.run_id, predict_loss_curve(f, last.final) AS p
                           FROM fits JOIN last ON last.run_id = fits.run_id)
        SELECT run_id, p['value'] AS v, p['lo'] AS lo, p['hi'] AS hi FROM predicted ORDER BY run_id""")
    return {row["run_id"]: (float(row["v"]), float(row["lo"]), float(row["hi"])) for row in rows}


def predict_with_combined_priors(server: Server) -> dict[str, tuple[float, float, float]]:
    """(value, lo, hi) at each run's last step, fitted on its prefix with
    the full fits of every other run of the same size as the prior."""
    rows = server.sql(f"""
        WITH {prior_prelude()},
             priors AS (SELECT last.run_id, loss_curve_prior(full_fits.f) AS p
                        FROM last JOIN full_fits
                          ON split_part(full_fits.run_id, '_', 1) = split_part(last.run_id, '_', 1)
                         AND full_fits.run_id <> last.run_id
                        GROUP BY last.run_id),
             fits AS (SELECT prefix.run_id, fit_loss_curve(prefix.step, prefix.loss, prefix.lr, priors.p) AS f
                      FROM prefix JOIN priors ON priors.run_id = prefix.run_id
                      GROUP BY prefix.run_id),
             predicted AS (SELECT fits.run_id, predict_loss_curve(f, last.final) AS p
                           FROM fits JOIN last ON last.run_id = fits.run_id)
        SELECT run_id, p['value'] AS v, p['lo'] AS lo, p['hi'] AS hi FROM predicted ORDER BY run_id""")
    return {row["run_id"]: (float(row["v"]), float(row["lo"]), float(row["hi"])) for row in rows}


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
        main_refs = {}
        for run in runs:
            size, schedule = size_and_schedule(run)
            ref = REFERENCE_OF_REFERENCE if schedule == REFERENCE else REFERENCE
            main_refs[run] = f"{size}_{ref}"
        with_prior = predict_with_priors(server, main_refs)
        combined = predict_with_combined_priors(server)
        by_reference = {}
        for ref in REFERENCES:
            refs = {run: f"{size_and_schedule(run)[0]}_{ref}" for run in runs
                    if size_and_schedule(run)[1] != ref}
            by_reference[ref] = predict_with_priors(server, refs)

    methods = ["fit_loss_curve", "with prior", "combined prior", "fit_power_law", "scipy curve_fit"]
    errors: dict[str, list[float]] = {m: [] for m in methods}
    covered = {"fit_loss_curve": 0, "with prior": 0, "combined prior": 0}
    print(f"{'run':24s} {'final loss':>10s}  {'fit_loss_curve (95% interval)':>36s} {'covers':>6s}  "
          f"{'with prior (95% interval)':>36s} {'covers':>6s}  "
          f"{'combined prior (95% interval)':>36s} {'covers':>6s}  "
          f"{'fit_power_law':>13s}  {'scipy curve_fit':>15s}")
    for row in results:
        data = runs[row["run_id"]]
        truth = float(data[-1, 2])
        final = float(row["final"])
        prefix = data[data[:, 0] <= PREFIX * final]
        ours, lo, hi, plain = (float(row[k]) for k in ("lc", "lo", "hi", "pl"))
        prior, plo, phi = with_prior[row["run_id"]]
        both, blo, bhi = combined[row["run_id"]]
        both_inside = blo <= truth <= bhi
        covered["combined prior"] += both_inside
        theirs = scipy_power_law(prefix[:, 0], prefix[:, 2], final)
        inside = lo <= truth <= hi
        prior_inside = plo <= truth <= phi
        covered["fit_loss_curve"] += inside
        covered["with prior"] += prior_inside
        for name, value in zip(methods, (ours, prior, both, plain, theirs)):
            errors[name].append(abs(value - truth) / truth)
        pct = lambda v: f"{100 * (v - truth) / truth:+.2f}%"  # noqa: E731
        print(f"{row['run_id']:24s} {truth:10.4f}  {ours:8.4f} {pct(ours):>7s} [{lo:.4f}, {hi:.4f}] "
              f"{'yes' if inside else 'no':>6s}  {prior:8.4f} {pct(prior):>7s} [{plo:.4f}, {phi:.4f}] "
              f"{'yes' if prior_inside else 'no':>6s}  {both:8.4f} {pct(both):>7s} [{blo:.4f}, {bhi:.4f}] "
              f"{'yes' if both_inside else 'no':>6s}  {plain:7.4f} {pct(plain):>7s}  {theirs:7.4f} {pct(theirs):>7s}")
    print()
    print(f"{'method':16s} {'median error':>12s} {'worst error':>12s} {'95% interval covers':>20s}")
    for name, e in errors.items():
        cover = f"{covered[name]} of {len(results)} runs" if name in covered else "-"
        print(f"{name:16s} {100 * statistics.median(e):11.2f}% {100 * max(e):11.2f}% {cover:>20s}")
    # How the combined prior's interval is calibrated: its share of runs
    # covered at several levels (the 95% interval's half-width is 1.96 se).
    from statistics import NormalDist
    levels = []
    for level in (0.5, 0.8, 0.9, 0.95):
        z = NormalDist().inv_cdf(0.5 + level / 2)
        inside = 0
        for run, (value, lo, hi) in combined.items():
            se = (hi - lo) / 2 / NormalDist().inv_cdf(0.975)
            inside += abs(value - float(runs[run][-1, 2])) <= z * se
        levels.append(f"{inside} of {len(combined)} at {round(100 * level)}%")
    print(f"\ncombined prior, runs inside the interval: {', '.join(levels)}")
    print()
    print("with a prior from each reference schedule (the other eight runs of each size):")
    print(f"{'reference':20s} {'runs':>4s} {'median error':>12s} {'worst error':>12s} {'95% interval covers':>20s}")
    for ref, predictions in by_reference.items():
        e, inside = [], 0
        for run, (value, lo, hi) in predictions.items():
            truth = float(runs[run][-1, 2])
            e.append(abs(value - truth) / truth)
            inside += lo <= truth <= hi
        print(f"{ref:20s} {len(e):4d} {100 * statistics.median(e):11.2f}% {100 * max(e):11.2f}% "
              f"{f'{inside} of {len(e)}':>20s}")


if __name__ == "__main__":
    main()
