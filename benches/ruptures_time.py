"""Time ruptures.Pelt(model="l2", min_size=2, jump=1) on a series.

Usage: ruptures_time.py FILE PENALTY ; FILE holds one value per line.
Prints the median wall time of 3 runs, in seconds.
"""

import sys
import time

import numpy as np
import ruptures


def main():
    values = np.array([float(line) for line in open(sys.argv[1])])
    penalty = float(sys.argv[2])
    times = []
    for _ in range(3):
        started = time.perf_counter()
        ruptures.Pelt(model="l2", min_size=2, jump=1).fit(values).predict(pen=penalty)
        times.append(time.perf_counter() - started)
    print(sorted(times)[1])


if __name__ == "__main__":
    main()
