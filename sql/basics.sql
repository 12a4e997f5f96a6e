-- Everyday queries over steplake's tables. Each statement ends with a
-- semicolon, and the end-to-end test `sql::every_example_query_runs` runs them all.

-- Runs, newest first, with how far each got.
SELECT r.run_id, r.project, r.name, r.status, r.created_at, max(s.step) AS last_step
FROM runs r LEFT JOIN scalars s ON s.run_id = r.run_id
GROUP BY r.run_id, r.project, r.name, r.status, r.created_at
ORDER BY r.created_at DESC;

-- Every series of every run, with its size and step range.
SELECT run_id, name, count(*) AS points, min(step) AS first_step, max(step) AS last_step
FROM scalars
GROUP BY run_id, name
ORDER BY run_id, name;

-- The latest value of each series (the "summary" a dashboard shows).
SELECT run_id, name, last_value(value ORDER BY step) AS last, max(step) AS at_step
FROM scalars
GROUP BY run_id, name;

-- Full history of one series: no sampling, every step.
SELECT step, value FROM scalars
WHERE run_id = 'first-run' AND name = 'train/loss'
ORDER BY step;

-- A step-range slice across all series (pages outside the range are skipped).
SELECT name, step, value FROM scalars
WHERE step BETWEEN 1000 AND 1999
ORDER BY name, step;

-- Non-finite values are data: find where training produced NaN or Inf.
SELECT run_id, name, min(step) AS first_bad_step, count(*) AS bad_points
FROM scalars
WHERE isnan(value) OR value IN ('inf'::double, '-inf'::double)
GROUP BY run_id, name;

-- Mean loss per 100-step bucket.
SELECT run_id, (step / 100) * 100 AS bucket, avg(value) AS mean_loss
FROM scalars
WHERE name = 'train/loss' AND NOT isnan(value)
GROUP BY run_id, bucket
ORDER BY run_id, bucket;
