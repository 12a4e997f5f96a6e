-- steplake cookbook: questions about training dynamics as single queries.
-- Each statement ends with a semicolon, and the end-to-end test
-- `sql::every_cookbook_query_runs` runs them all on a seeded run. Names used:
-- train/loss, eval/acc, grad_norm. Adjust them to what your trainer logs.

-- 1. When did test accuracy take off and stay up? (the emergence step)
SELECT run_id, first_sustained(step, value > 0.9 AND NOT isnan(value), 5) AS emerged_at
FROM scalars WHERE name = 'eval/acc'
GROUP BY run_id;

-- 2. Loss spikes per run: how many, how often, and the first one.
SELECT run_id, count(*) AS spikes, min(step) AS first_spike
FROM (SELECT run_id, step,
             is_spike(value) OVER (PARTITION BY run_id ORDER BY step) AS spike
      FROM scalars WHERE name = 'train/loss')
WHERE spike
GROUP BY run_id;

SELECT run_id, spike_rate(value ORDER BY step) AS spike_rate
FROM scalars WHERE name = 'train/loss'
GROUP BY run_id;

-- 3. Where does the loss curve change regime?
SELECT run_id, cp['step'] AS step, cp['mean_before'] AS before, cp['mean_after'] AS after
FROM (SELECT run_id, unnest(cps) AS cp
      FROM (SELECT run_id, changepoints(step, value) AS cps
            FROM scalars WHERE name = 'train/loss' GROUP BY run_id))
ORDER BY run_id, step;

-- 4. Do gradient-norm spikes lead loss spikes, and by how many steps?
--    The lag at which the two spike ratios correlate most: positive when
--    the grad norm moves first.
WITH g AS (SELECT run_id, step, spike_ratio(value) OVER (PARTITION BY run_id ORDER BY step) AS r
           FROM scalars WHERE name = 'grad_norm'),
     l AS (SELECT run_id, step, spike_ratio(value) OVER (PARTITION BY run_id ORDER BY step) AS r
           FROM scalars WHERE name = 'train/loss')
SELECT run_id, lead['lag'] AS lead_points, lead['steps'] AS lead_steps, lead['corr'] AS corr
FROM (SELECT g.run_id, lag_corr(g.step, g.r, l.r, 20) AS lead
      FROM g JOIN l ON l.run_id = g.run_id AND l.step = g.step
      GROUP BY g.run_id);

--    And for each loss spike, the latest grad-norm spike at or before it.
WITH loss_spikes AS (
       SELECT run_id, step FROM (
         SELECT run_id, step, is_spike(value) OVER (PARTITION BY run_id ORDER BY step) AS spike
         FROM scalars WHERE name = 'train/loss') WHERE spike),
     grad_spikes AS (
       SELECT run_id, step FROM (
         SELECT run_id, step, is_spike(value) OVER (PARTITION BY run_id ORDER BY step) AS spike
         FROM scalars WHERE name = 'grad_norm') WHERE spike)
SELECT l.run_id, l.step AS loss_spike, max(g.step) AS grad_spike, l.step - max(g.step) AS lead
FROM loss_spikes l LEFT JOIN grad_spikes g ON g.run_id = l.run_id AND g.step <= l.step
GROUP BY l.run_id, l.step
ORDER BY l.run_id, l.step;

-- 5. Update-to-weight ratio per layer, from logged norms (a trainer logs
--    update_norm/<layer> and weight_norm/<layer>; with whole tensors stored,
--    rel_change(a, b) over LAG gives the same from the weights themselves).
SELECT u.run_id, substr(u.name, 13) AS layer, u.step, u.value / w.value AS update_to_weight
FROM scalars u JOIN scalars w
  ON w.run_id = u.run_id AND w.step = u.step AND w.name = 'weight_norm/' || substr(u.name, 13)
WHERE u.name LIKE 'update_norm/%'
ORDER BY layer, u.step;

-- 6. Early prediction of the final loss from the first 20% of the run.
WITH bounds AS (SELECT run_id, max(step) AS last_step FROM scalars WHERE name = 'train/loss' GROUP BY run_id),
     fits AS (
       SELECT s.run_id, fit_power_law(s.step, s.value) AS f
       FROM scalars s JOIN bounds b ON b.run_id = s.run_id
       WHERE s.name = 'train/loss' AND s.step <= b.last_step / 5
       GROUP BY s.run_id)
SELECT f.run_id, f.f['alpha'] AS alpha, predict_power_law(f.f, b.last_step) AS predicted_final_loss
FROM fits f JOIN bounds b ON b.run_id = f.run_id;

-- 7. The loss smoothed as TensorBoard's slider would at 0.6, beside the raw value.
SELECT step, value, smooth(value, 0.6) OVER (PARTITION BY run_id ORDER BY step) AS smoothed
FROM scalars WHERE name = 'train/loss'
ORDER BY step;

-- 8. A plot-ready view of a long series: 500 buckets, extremes kept.
SELECT d['step'] AS step, d['min'] AS lo, d['max'] AS hi, d['last'] AS last
FROM (SELECT unnest(downsample(step, value, 500)) AS d FROM scalars WHERE name = 'train/loss')
ORDER BY step;

-- 9. Schedule-aware prediction of the final loss, with an interval: fit the
--    first 30% of the loss against the learning rate logged as 'lr'.
WITH l AS (SELECT run_id, step, value FROM scalars WHERE name = 'train/loss'),
     r AS (SELECT run_id, step, value AS lr FROM scalars WHERE name = 'lr'),
     last AS (SELECT run_id, max(step) AS final FROM l GROUP BY run_id),
     fits AS (SELECT r.run_id, fit_loss_curve(r.step, CASE WHEN r.step <= 0.3 * last.final THEN l.value END, r.lr) AS f
              FROM r JOIN last ON last.run_id = r.run_id
              LEFT JOIN l ON l.run_id = r.run_id AND l.step = r.step
              GROUP BY r.run_id)
SELECT fits.run_id, predict_loss_curve(f, last.final) AS predicted
FROM fits JOIN last ON last.run_id = fits.run_id;

--    The same with finished runs of the same model and data as the prior
--    (here the runs tagged `reference`): the prefix of a new run rarely
--    holds the decay of its schedule, and the prior brings the exponent and
--    the annealing coefficient from runs that did, and how much they vary
--    between runs into the interval. Replace the last step with the
--    planned one of a run still going.
WITH l AS (SELECT run_id, step, value FROM scalars WHERE name = 'train/loss'),
     r AS (SELECT run_id, step, value AS lr FROM scalars WHERE name = 'lr'),
     last AS (SELECT run_id, max(step) AS final FROM l GROUP BY run_id),
     finished AS (SELECT r.run_id, fit_loss_curve(r.step, l.value, r.lr) AS f
                  FROM r LEFT JOIN l ON l.run_id = r.run_id AND l.step = r.step
                  WHERE r.run_id IN (SELECT run_id FROM runs WHERE array_has(tags, 'reference'))
                  GROUP BY r.run_id),
     prior AS (SELECT loss_curve_prior(f) AS p FROM finished),
     fits AS (SELECT r.run_id, fit_loss_curve(r.step, CASE WHEN r.step <= 0.3 * last.final THEN l.value END, r.lr, prior.p) AS f
              FROM r JOIN last ON last.run_id = r.run_id
              LEFT JOIN l ON l.run_id = r.run_id AND l.step = r.step
              CROSS JOIN prior
              GROUP BY r.run_id)
SELECT fits.run_id, predict_loss_curve(f, last.final) AS predicted
FROM fits JOIN last ON last.run_id = fits.run_id;

-- 10. Phases of test accuracy: where it starts rising and where it stops.
SELECT run_id, unnest(phases(step, value)) AS phase
FROM scalars WHERE name = 'eval/acc'
GROUP BY run_id;

-- 11. Test accuracy at 10k steps, when it first reached 0.9, and the loss
--     at that moment.
WITH acc AS (SELECT run_id, value_at(step, value, 10000) AS acc_at_10k,
                    crossing(step, value, 0.9, 'up') AS reached_90
             FROM scalars WHERE name = 'eval/acc' GROUP BY run_id)
SELECT acc.run_id, acc.acc_at_10k, acc.reached_90,
       value_at(s.step, s.value, CAST(acc.reached_90 AS BIGINT)) AS loss_then
FROM acc JOIN scalars s ON s.run_id = acc.run_id AND s.name = 'train/loss'
GROUP BY acc.run_id, acc.acc_at_10k, acc.reached_90;
