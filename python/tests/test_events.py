"""Standing conditions end to end: the real server evaluates them on the
batches a Python trainer logs, and the events come back to the trainer."""

from __future__ import annotations

import http.server
import json
import math
import threading
import time

import pytest

import steplake
from conftest import Server


def loss(step: int, spikes: tuple[int, ...]) -> float:
    """A falling training loss with a little wiggle, three times higher at ``spikes``."""
    value = 2.0 / (1.0 + 0.01 * step) * (1.0 + 0.01 * math.sin(step * 1.7))
    return value * 3.0 if step in spikes else value


def train(run: steplake.Run, spikes: tuple[int, ...], stop: threading.Event, steps: int,
          start: int = 0, pause: float = 0.001) -> int:
    """Logs ``train/loss`` until ``stop`` is set; returns the last step logged."""
    step = start
    for step in range(start, steps):
        run.log({"train/loss": loss(step, spikes)}, step=step)
        if stop.is_set():
            break
        time.sleep(pause)
    return step


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_spike_reaches_the_callback_which_stops_the_loop(server):
    run = steplake.init(project="watch", name="spiky", server=server.address)
    condition_id = run.watch_for("train/loss", spike=True, label="loss spike")
    stop = threading.Event()
    seen: list[steplake.Event] = []

    def on_event(event: steplake.Event) -> None:
        seen.append(event)
        stop.set()

    run.on_event(on_event)
    planted = 400
    last = train(run, (planted,), stop, steps=20_000)
    # The loop ran past the spike only while its batch (0.1 s of steps) was
    # in flight, and stopped long before the end.
    assert stop.is_set(), "the event never reached the callback"
    assert planted <= last < planted + 2_000, last
    run.finish()
    assert [(e.series, e.step, e.label, e.condition_id) for e in seen] == [
        ("train/loss", planted, "loss spike", condition_id)]
    assert seen[0].value == pytest.approx(loss(planted, (planted,)))
    assert run.events() == seen
    rows = steplake.connect(server.address).sql(
        f"SELECT series, step, label, condition_id FROM events WHERE run_id = '{run.id}'"
    ).arrow().to_pylist()
    assert rows == [{"series": "train/loss", "step": planted, "label": "loss spike",
                     "condition_id": condition_id}]


def test_a_restart_keeps_conditions_events_and_delivers_each_event_once(server):
    run = steplake.init(project="watch", name="restarted", server=server.address)
    run.watch_for("train/loss", spike=True)
    first, second = 300, 1_500
    calls: list[steplake.Event] = []
    run.on_event(calls.append)
    stop = threading.Event()
    step = train(run, (first, second), stop, steps=first + 200)
    wait_for(lambda: len(calls) == 1)
    server.kill()  # SIGKILL: no flush; the WAL has everything acknowledged
    time.sleep(0.5)
    server.start()
    train(run, (first, second), stop, steps=2_000, start=step + 1)
    wait_for(lambda: len(calls) == 2)
    run.finish()
    time.sleep(0.3)
    assert [e.step for e in calls] == [first, second], "each event once, none invented by the restart"
    assert len({e.event_id for e in calls}) == 2
    connection = steplake.connect(server.address)
    steps = connection.sql(
        f"SELECT step FROM events WHERE run_id = '{run.id}' ORDER BY seq").arrow().to_pylist()
    assert steps == [{"step": first}, {"step": second}]
    conditions = connection.sql(
        f"SELECT predicate FROM conditions WHERE run_id = '{run.id}'").arrow().to_pylist()
    assert conditions == [{"predicate": "is_spike(value)"}]


def test_the_webhook_receives_each_event_as_json(tmp_path):
    received: list[dict] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"content_type": self.headers["Content-Type"], **json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    receiver = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    server = Server(tmp_path / "data", extra=["--alert-webhook", url]).start()
    try:
        run = steplake.init(project="watch", server=server.address)
        run.watch_for("train/loss", nonfinite=True, label="diverged")
        for step in range(50):
            run.log({"train/loss": float("nan") if step == 20 else 1.0}, step=step)
        run.finish()
        wait_for(lambda: len(received) == 1)
        event = received[0]
        assert event["content_type"] == "application/json"
        assert (event["run_id"], event["series"], event["step"], event["label"]) == (
            run.id, "train/loss", 20, "diverged")
        assert event["value"] == "NaN" and event["event_id"] and event["seq"] > 0
        assert "diverged" in event["text"]
    finally:
        server.kill()
        receiver.shutdown()


@pytest.mark.parametrize("predicate, says", [
    ("unknown_fn(value) > 1", "unknown_fn"),
    ("(SELECT max(value) FROM scalars) > 1", "subquer"),
    ("SELECT 1", "not a predicate"),
    ("loss > 1", "`loss` is not a column"),
    ("value > 1; DROP TABLE runs", "not a predicate"),
    ("x" * 5000, "bytes"),
])
def test_bad_conditions_are_refused_with_what_is_allowed(server, predicate, says):
    run = steplake.init(project="watch", server=server.address)
    with pytest.raises(ValueError) as refused:
        run.watch_for("train/loss", predicate)
    message = str(refused.value)
    assert says in message, message
    assert "is_spike" in message, "the refusal says what is allowed"
    run.finish()


def test_watch_for_takes_exactly_one_form(server):
    run = steplake.init(project="watch", server=server.address)
    with pytest.raises(ValueError, match="exactly one"):
        run.watch_for("train/loss", spike=True, above=3.0)
    with pytest.raises(ValueError, match="exactly one"):
        run.watch_for("train/loss")
    run.finish()


def test_a_prediction_condition_fires_with_the_prediction_and_its_interval(server):
    run = steplake.init(project="watch", server=server.address)
    # The loss tends to about 1.0 by step 5,000 (1 + 2/sqrt(5001) = 1.028;
    # a fit of the first few hundred steps says a little less).
    worse = run.watch_for("train/loss", predict={"final_step": 5_000, "above": 0.9, "lr": "lr",
                                                 "every": 100}, label="ends above 0.9")
    run.watch_for("train/loss", predict={"final_step": 5_000, "above": 3.0, "every": 100})
    for step in range(600):
        loss = 1.0 + 2.0 * (step + 1) ** -0.5 * (1.0 + 0.002 * math.sin(step))
        run.log({"train/loss": loss, "lr": 1e-3}, step=step)
        time.sleep(0.001)
    wait_for(lambda: len(run.events()) >= 1)
    time.sleep(0.5)
    events = run.events()
    run.finish()
    assert [(e.condition_id, e.label) for e in events] == [(worse, "ends above 0.9")], events
    event = events[0]
    assert event.final_step == 5_000 and event.threshold == 0.9
    assert 0.9 < event.predicted < 1.1, event
    assert event.predicted_lo <= event.predicted <= event.predicted_hi
    assert event.step >= 99, "the first fit is due after 100 points"
    rows = steplake.connect(server.address).sql(
        f"SELECT predicate FROM conditions WHERE condition_id = '{worse}'").arrow().to_pylist()
    assert "predicted value at step 5000" in rows[0]["predicate"]


def test_a_prediction_that_fired_does_not_fire_again_after_a_restart(server):
    run = steplake.init(project="watch", server=server.address)
    # Predicted to end near 1.0, above 0.9: fires at the first fit and stays
    # worse, so it must fire once, restart or not.
    run.watch_for("train/loss", predict={"final_step": 5_000, "above": 0.9, "every": 100})

    def log(steps: range) -> None:
        for step in steps:
            run.log({"train/loss": 1.0 + 2.0 * (step + 1) ** -0.5 * (1.0 + 0.002 * math.sin(step))}, step=step)
            time.sleep(0.001)

    log(range(300))
    wait_for(lambda: len(run.events()) == 1)
    server.kill()
    time.sleep(0.5)
    server.start()
    log(range(300, 700))  # four fits' worth of points, all still worse
    run.finish()
    time.sleep(1.0)  # fits run beside ingest; give the last one time
    rows = steplake.connect(server.address).sql(
        f"SELECT step FROM events WHERE run_id = '{run.id}'").arrow().to_pylist()
    assert len(rows) == 1, rows
    assert len(run.events()) == 1


def test_a_project_default_watches_runs_created_after_it(server):
    condition_id = steplake.watch_project("lab", "train/*", spike=True, server=server.address)
    run = steplake.init(project="lab", server=server.address)
    other = steplake.init(project="elsewhere", server=server.address)
    for step in range(60):
        value = loss(step, (40,))
        run.log({"train/loss": value, "eval/loss": value}, step=step)
        other.log({"train/loss": value}, step=step)
    wait_for(lambda: len(run.events()) == 1)
    assert [(e.series, e.step, e.condition_id) for e in run.events()] == [("train/loss", 40, condition_id)]
    run.finish()
    other.finish()
    rows = steplake.connect(server.address).sql(
        "SELECT run_id FROM events").arrow().to_pylist()
    assert rows == [{"run_id": run.id}], "only the project's run, only the pattern's series"
    with pytest.raises(ValueError, match="not a column"):
        steplake.watch_project("lab", "x", "nope > 1", server=server.address)
