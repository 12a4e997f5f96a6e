"""The Hugging Face callbacks against transformers' own callback machinery.

PyTorch is not installed here, so transformers' ``Trainer`` cannot run.
Its callbacks can: ``TrainingArguments``, ``TrainerState``,
``TrainerControl``, ``DefaultFlowCallback`` and the ``CallbackHandler``
that calls every callback are the real ones. A numpy training loop calls the
handler in the order ``Trainer``'s inner loop does:

- ``on_step_end`` after each optimizer step;
- then ``on_log`` when the flow callback asks for a log;
- then ``on_save`` when a callback asks for a checkpoint;
- then it checks ``should_training_stop``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import steplake

trainer_callback = pytest.importorskip("transformers.trainer_callback")
transformers = pytest.importorskip("transformers")

from steplake.huggingface import SteplakeCallback, StopOnEventCallback  # noqa: E402


def train(args, handler, state, control, spike_at: int, output_dir: Path) -> list[int]:
    """Fits y = 3x + 1 by SGD, one minibatch a step; the minibatch of
    ``spike_at`` is corrupted, so its loss spikes. Returns the steps at
    which a checkpoint was saved."""
    rng = np.random.default_rng(7)
    weight, bias = 0.0, 0.0
    saved: list[int] = []
    control = handler.on_train_begin(args, state, control)
    for _ in range(state.max_steps):
        control = handler.on_step_begin(args, state, control)
        x = rng.normal(size=32)
        y = 3.0 * x + 1.0 + rng.normal(scale=0.1, size=32)
        if state.global_step == spike_at:
            y = y + 40.0
        error = weight * x + bias - y
        loss = float(np.mean(error**2))
        weight -= args.learning_rate * float(np.mean(2 * error * x))
        bias -= args.learning_rate * float(np.mean(2 * error))
        state.global_step += 1
        control = handler.on_step_end(args, state, control)
        if control.should_log:
            control.should_log = False
            state.log_history.append({"loss": loss, "step": state.global_step})
            control = handler.on_log(args, state, control, {"loss": loss, "learning_rate": args.learning_rate})
        if control.should_save:
            checkpoint = output_dir / f"checkpoint-{state.global_step}"
            checkpoint.mkdir()
            (checkpoint / "weights.json").write_text(json.dumps({"weight": weight, "bias": bias}))
            saved.append(state.global_step)
            control = handler.on_save(args, state, control)
        if control.should_training_stop:
            break
        time.sleep(0.002)  # a step of real training takes a while
    handler.on_train_end(args, state, control)
    return saved


def test_a_spike_stops_a_trainer_which_saves_a_checkpoint(server, tmp_path):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), run_name="hf-regression", learning_rate=0.05,
        logging_steps=1, save_strategy="no", report_to=[], max_steps=20_000,
    )
    logging = SteplakeCallback(project="hf", server=server.address)
    stopping = StopOnEventCallback(logging, watch_for={"loss": {"spike": 5.0, "label": "loss spike"}})
    handler = trainer_callback.CallbackHandler(
        [trainer_callback.DefaultFlowCallback(), logging, stopping],
        model=None, processing_class=None, optimizer=None, lr_scheduler=None,
    )
    state = trainer_callback.TrainerState(max_steps=args.max_steps, logging_steps=1)
    control = trainer_callback.TrainerControl()
    spike_at = 600
    saved = train(args, handler, state, control, spike_at, tmp_path)

    # The Trainer's global step counts steps done: the corrupted minibatch
    # is logged at spike_at + 1.
    assert stopping.event is not None, "no event reached the callback"
    event = stopping.event
    assert (event.series, event.step, event.label) == ("loss", spike_at + 1, "loss spike")
    # It stopped soon after (the event travels with the logger's next
    # batch), long before max_steps, and saved a checkpoint as it stopped.
    assert spike_at + 1 <= state.global_step < spike_at + 2_000, state.global_step
    assert saved == [state.global_step]
    assert json.loads((tmp_path / f"checkpoint-{state.global_step}" / "weights.json").read_text())

    run_id = logging._run.id
    client = steplake.connect(server.address)
    events = client.sql(f"SELECT series, step, label FROM events WHERE run_id = '{run_id}'").arrow().to_pylist()
    assert events == [{"series": "loss", "step": spike_at + 1, "label": "loss spike"}]
    # Every step until the stop was logged at the Trainer's global step,
    # with the training arguments as the run's config.
    steps = client.sql(
        f"SELECT min(step) AS first, max(step) AS last, count(*) AS n FROM scalars "
        f"WHERE run_id = '{run_id}' AND name = 'loss'"
    ).arrow().to_pylist()
    assert steps == [{"first": 1, "last": state.global_step, "n": state.global_step}]
    runs = client.sql(f"SELECT name, config FROM runs WHERE run_id = '{run_id}'").arrow().to_pylist()
    assert runs[0]["name"] == "hf-regression"
    config = json.loads(runs[0]["config"])
    assert config["learning_rate"] == 0.05 and config["max_steps"] == 20_000
