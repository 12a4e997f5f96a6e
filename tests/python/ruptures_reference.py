"""Reference changepoints from the `ruptures` package.

Prints JSON: a list of {"name", "values" (repr strings, exact), "penalty",
"min_size", "breakpoints"} where breakpoints are the indices of
ruptures.Pelt(model="l2", min_size=min_size, jump=1).predict(pen=penalty),
without the final one (the series length).
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
    for name, segments, noise, penalty, min_size in cases:
        values = series(rng, segments, noise)
        bkps = ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(values).predict(pen=penalty)
        out.append(
            {
                "name": name,
                "values": [repr(float(v)) for v in values],
                "penalty": penalty,
                "min_size": min_size,
                "breakpoints": [int(b) for b in bkps[:-1]],
            }
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
