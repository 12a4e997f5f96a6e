"""Killing the server while a trainer logs loses nothing, and the trainer never notices."""

from __future__ import annotations

import threading
import time

import steplake


def test_kill_the_server_while_logging_then_restart(server):
    steps = 6000
    errors: list[BaseException] = []
    progress = {"step": 0}

    def trainer() -> None:
        try:
            run = steplake.init(name="survivor", server=server.address)
            for step in range(steps):
                run.log({"loss": 1.0 / (step + 1), "acc": step / steps, "lr": 0.1}, step=step)
                progress["step"] = step
                time.sleep(0.0005)
            run.finish(timeout=90)
            progress["run_id"] = run.id
        except BaseException as error:  # the test fails if anything reaches the loop
            errors.append(error)

    thread = threading.Thread(target=trainer)
    thread.start()
    while progress["step"] < steps // 3:
        time.sleep(0.01)
    server.kill()  # SIGKILL mid-stream: batches in flight are never acknowledged
    killed_at = progress["step"]
    time.sleep(1.5)
    server.start()  # same port, same data directory
    thread.join(timeout=180)
    assert not thread.is_alive()
    assert errors == []
    assert killed_at < steps - 1, "the server must die while the trainer is still logging"

    run_id = progress["run_id"]
    result = steplake.connect(server.address).sql(
        f"SELECT name, count(*) AS n, count(DISTINCT step) AS d, sum(value) AS s "
        f"FROM scalars WHERE run_id = '{run_id}' GROUP BY name ORDER BY name").arrow().to_pylist()
    assert [(r["name"], r["n"], r["d"]) for r in result] == [
        ("acc", steps, steps), ("loss", steps, steps), ("lr", steps, steps)]
    assert result[0]["s"] == sum(s / steps for s in range(steps))
    status = steplake.connect(server.address).sql(
        f"SELECT status FROM runs WHERE run_id = '{run_id}'").arrow().to_pylist()
    assert status == [{"status": "finished"}]
