"""Reference changepoints from the `ruptures` package.

Prints JSON: a list of {"name", "values" (repr strings, exact), "call",
"breakpoints"}: `call` is the steplake SQL call that must find the same
breakpoints as ruptures (indices, without the final one, the series length):
- changepoints(step, value, 'pelt', pen, min_size) and
  ruptures.Pelt(model="l2", min_size=min_size, jump=1).predict(pen=pen);
- changepoints(step, value, NULL, NULL, min_size, k) and
  ruptures.Binseg(model="l2", min_size=min_size, jump=1).predict(n_bkps=k);
- phases(step, value, 'pelt', pen, min_size) and
  ruptures.Pelt(model="linear", ...) on the signal [value, 1, step].
"""

import json

import numpy as np
import ruptures


def series(rng, segments, noise):
    parts = [level + noise * rng.standard_normal(length) for length, level in segments]
    return np.concatenate(parts)


def main():
    rng = np.random.default_rng(20261121)
    cases = [
        ("shifts", [(200, 0.0), (150, 2.0), (250, -1.0)], 0.5, 5.0, 2),
        ("many", [(60, 0.0), (40, 1.0), (80, 0.2), (50, 1.5), (70, 0.5)], 0.3, 2.0, 5),
        ("none", [(500, 1.0)], 1.0, 20.0, 2),
        ("small_steps", [(300, 0.0), (300, 0.4)], 0.2, 1.0, 10),
        ("loss_like", [(100, 3.0), (400, 1.2), (100, 0.4)], 0.05, 0.05, 2),
        ("noisy", [(250, 0.0), (250, 1.0)], 1.0, 15.0, 3),
    ]
    out = []

    def case(name, values, call, bkps):
        out.append(
            {
                "name": name,
                "values": [repr(float(v)) for v in values],
                "call": call,
                "breakpoints": [int(b) for b in bkps[:-1]],
            }
        )

    for name, segments, noise, penalty, min_size in cases:
        values = series(rng, segments, noise)
        bkps = ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(values).predict(pen=penalty)
        case(name, values, f"changepoints(step, value, 'pelt', {penalty!r}, {min_size})", bkps)
    for name, segments, noise, k, min_size in [
        ("top_two", [(100, 0.0), (80, 2.0), (120, 0.5), (60, 3.0)], 0.4, 2, 2),
        ("top_three", [(60, 0.0), (40, 1.0), (80, 0.2), (50, 1.5)], 0.3, 3, 5),
    ]:
        values = series(rng, segments, noise)
        bkps = ruptures.Binseg(model="l2", min_size=min_size, jump=1).fit(values).predict(n_bkps=k)
        case(name, values, f"changepoints(step, value, NULL, NULL, {min_size}, {k})", bkps)
    # Slope changes: warmup rise, plateau, decay; and a grokking-like rise.
    for name, slopes, noise, penalty, min_size in [
        ("warmup_decay", [(80, 0.02), (150, 0.0), (120, -0.01)], 0.05, 2.0, 5),
        ("rise", [(200, 0.0), (60, 0.015), (140, 0.0)], 0.02, 0.5, 5),
    ]:
        level, values = 0.0, []
        for length, slope in slopes:
            for _ in range(length):
                level += slope
                values.append(level)
        values = np.array(values) + noise * rng.standard_normal(len(values))
        steps = np.arange(len(values), dtype=float)
        signal = np.column_stack([values, np.ones(len(values)), steps])
        bkps = ruptures.Pelt(model="linear", min_size=min_size, jump=1).fit(signal).predict(pen=penalty)
        case(name, values, f"phases(step, value, 'pelt', {penalty!r}, {min_size})", bkps)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
