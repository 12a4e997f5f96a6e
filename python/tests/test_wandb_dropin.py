"""``import steplake.wandb as wandb``: one training script run twice, with
W&B itself (offline, its run then imported by ``steplake import wandb``)
and with the drop-in logging straight to the server. What each stores is
compared: every series point by point (W&B's ``_step`` semantics with
``step=`` and ``commit=``), the configuration, tags, summary and step
metrics, and the status. The drop-in's ``alert`` becomes an event."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

import steplake
from conftest import steplake_binary

real_wandb = pytest.importorskip("wandb")


def training(wandb, directory: str, **options) -> str:
    """The script: what a training loop logs through the wandb module.
    Returns the run id."""
    run = wandb.init(project="sweep", name="lr-0.01", config={"lr": 0.01, "model": {"depth": 4}},
                     tags=["drop-in"], dir=directory, **options)
    wandb.config.update({"batch_size": 32})
    wandb.config.warmup = 100
    wandb.define_metric("epoch")
    wandb.define_metric("val/*", step_metric="epoch")
    for step in range(120):
        wandb.log({"train/loss": 1.0 / (step + 1)}, commit=False)
        wandb.log({"train/acc": step / 120, "flag": step % 2 == 0})
        if step == 5:
            wandb.log({"train/loss": float("nan"), "grad/norm": float("inf")})
    # Explicit steps: rows gather until a larger step comes.
    wandb.log({"val/acc": 0.5}, step=200)
    wandb.log({"epoch": 1}, step=200)
    wandb.log({"val/acc": 0.6, "epoch": 2, "extra": {"depth": 3}}, step=210)
    wandb.log({"ignored": 1.0}, step=150)  # before the current step: refused
    wandb.log({"last": 7}, step=220, commit=True)
    wandb.summary["best_acc"] = 0.9
    wandb.summary["train/acc"] = 0.95  # differs from the last value logged
    wandb.summary.update({"val/acc": 0.6})  # the same as the last value logged
    run_id = run.id
    wandb.finish()
    return run_id


def series(connection, run_id: str) -> dict[str, list[tuple[int, float]]]:
    table = connection.sql(
        f"SELECT name, step, value FROM scalars WHERE run_id = '{run_id}' ORDER BY name, step").arrow()
    out: dict[str, list[tuple[int, float]]] = {}
    for name, step, value in zip(*(table.column(c).to_pylist() for c in ("name", "step", "value"))):
        out.setdefault(name, []).append((step, value))
    return out


def test_the_drop_in_stores_what_wandb_stores(server, tmp_path: Path, monkeypatch) -> None:
    import steplake.wandb as dropin

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-home"))
    (tmp_path / "real").mkdir()
    real_id = training(real_wandb, str(tmp_path / "real"))
    done = subprocess.run(
        [steplake_binary(), "import", "wandb", "--wandb", str(Path(sys.executable).parent / "wandb"),
         "--server", f"http://{server.address}", str(tmp_path / "real")],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    mine_id = training(dropin, str(tmp_path / "spool"), server=server.address, id="dropin")
    assert mine_id == "dropin" and dropin.run is None

    connection = steplake.connect(server.address)
    real, mine = series(connection, real_id), series(connection, "dropin")
    assert sorted(real) == sorted(mine)
    for name in real:
        assert len(real[name]) == len(mine[name]), name
        for (step, value), (my_step, my_value) in zip(real[name], mine[name]):
            assert step == my_step, name
            assert value == my_value or (math.isnan(value) and math.isnan(my_value)), (name, step)
    assert "ignored" not in mine
    assert mine["val/acc"] == [(200, 0.5), (210, 0.6)] and mine["last"] == [(220, 7.0)]
    assert mine["extra.depth"] == [(210, 3.0)]

    runs = {r["run_id"]: r for r in connection.sql(
        "SELECT run_id, project, name, status, tags, config FROM runs").arrow().to_pylist()}
    for key in ("project", "name", "status"):
        assert runs[real_id][key] == runs["dropin"][key], key
    assert runs["dropin"]["status"] == "finished" and list(runs["dropin"]["tags"]) == ["drop-in"]
    real_config, my_config = json.loads(runs[real_id]["config"]), json.loads(runs["dropin"]["config"])
    assert real_config == my_config
    assert my_config["summary"] == {"best_acc": 0.9, "train/acc": 0.95}
    assert my_config["wandb.step_metrics"] == {"val/*": "epoch"}
    assert my_config["warmup"] == 100 and my_config["model"] == {"depth": 4}


def test_alert_is_an_event_and_disabled_logs_nothing(server, tmp_path: Path) -> None:
    import steplake.wandb as wandb

    run = wandb.init(project="alerts", id="alerting", server=server.address)
    wandb.log({"loss": 1.0})
    wandb.alert(title="loss diverged", text="loss is 1e9", level=wandb.AlertLevel.WARN)
    wandb.log({"loss": 2.0})
    wandb.alert(title="loss diverged", text="again")
    run.steplake.flush()
    events = []
    for _ in range(100):
        events = run.steplake.events()
        if len(events) == 2:
            break
        time.sleep(0.1)
    assert [(e.step, e.label) for e in events] == [
        (1, "loss diverged: loss is 1e9 [WARN]"), (2, "loss diverged: again [INFO]")]
    wandb.finish()

    off = wandb.init(mode="disabled")
    off.log({"loss": 1.0})
    off.finish()
    connection = steplake.connect(server.address)
    assert connection.sql("SELECT count(*) AS n FROM runs").arrow().column("n")[0].as_py() == 1
    with pytest.raises(RuntimeError, match="before wandb.init"):
        wandb.log({"loss": 1.0})
