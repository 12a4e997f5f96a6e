"""One writer of the crash trials (tests/e2e/crash_trials.rs): the Python logger.

Usage: crash_logger.py SERVER RUN_ID STEPS SPOOL_DIR

Logs STEPS steps of the series "x" (value = step) into run RUN_ID, pausing
briefly every chunk so that logging spans the moment the trial kills the
server. After each flush that returned True it prints ``acked N``: steps
0..N-1 are acknowledged by the server. Then it finishes the run (the logger
delivers whatever it spooled once the server is back) and prints
``finished``.
"""

import sys
import time

import steplake

CHUNK = 2000


def main() -> None:
    server, run_id, steps, spool = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    run = steplake.init(run_id=run_id, server=server, spool_dir=spool, flush_interval=0.05)
    for start in range(0, steps, CHUNK):
        end = min(start + CHUNK, steps)
        run.log_many({"x": [float(s) for s in range(start, end)]}, steps=list(range(start, end)))
        if run.flush(timeout=0.2):
            print(f"acked {end}", flush=True)
        time.sleep(0.02)
    run.finish(timeout=60)
    print("finished", flush=True)


if __name__ == "__main__":
    main()
