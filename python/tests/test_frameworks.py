"""PyTorch, Lightning and Hugging Face integrations (run when those are installed)."""

from __future__ import annotations

import importlib.util

import pytest

import steplake

torch = pytest.importorskip("torch", reason="PyTorch is not installed; the watch() tests need it")


def rows(server, sql):
    return steplake.connect(server.address).sql(sql).arrow().to_pylist()


def test_tensor_statistics_match_the_servers(server):
    from steplake.torch import tensor_statistics

    values = torch.tensor([[1.0, -2.0, 0.0], [float("nan"), 4.0, float("inf")]])
    stats = tensor_statistics(values)
    assert stats.numel == 6 and stats.nan_count == 1 and stats.inf_count == 1
    assert stats.min == -2.0 and stats.max == 4.0 and stats.abs_max == 4.0
    assert stats.mean == pytest.approx(0.75)
    assert stats.zero_frac == pytest.approx(0.25)
    assert sum(stats.histogram) == 4 and len(stats.histogram) == 64
    run = steplake.init(server=server.address)
    run.log_tensor("t", values, step=0)
    run.log_tensor_stats("t_stats", stats, step=0, dtype="f32", shape=[2, 3])
    run.finish()
    got = rows(server, "SELECT name, mean, std, l2, hist FROM tensors ORDER BY name")
    assert got[0]["mean"] == pytest.approx(got[1]["mean"])
    assert got[0]["std"] == pytest.approx(got[1]["std"])
    assert got[0]["l2"] == pytest.approx(got[1]["l2"])
    assert got[0]["hist"] == got[1]["hist"]


def test_watch_logs_weights_grads_and_activations(server):
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = steplake.init(server=server.address)
    watcher = steplake.watch(model, run, every=2, log=("weights", "grads", "activations"), tensors_every=4)
    for _ in range(5):
        loss = model(torch.randn(16, 4)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    watcher.remove()
    run.finish()
    names = {r["name"] for r in rows(server, "SELECT DISTINCT name FROM tensors")}
    assert {"weights/0.weight", "grads/0.weight", "activations/0", "activations/2"} <= names
    steps = {r["step"] for r in rows(server, "SELECT DISTINCT step FROM tensors")}
    assert steps == {0, 2, 4}
    whole = rows(server, "SELECT step FROM tensors WHERE name = 'weights/0.weight' AND tensor IS NOT NULL ORDER BY step")
    assert [r["step"] for r in whole] == [0, 4]


def test_bf16_tensors_keep_their_dtype(server):
    run = steplake.init(server=server.address)
    run.log_tensor("b", torch.arange(4, dtype=torch.bfloat16), step=0)
    run.finish()
    assert rows(server, "SELECT dtype FROM tensors") == [{"dtype": "bf16"}]


@pytest.mark.skipif(importlib.util.find_spec("lightning") is None, reason="Lightning is not installed")
def test_lightning_logger_is_a_logger():
    from lightning.pytorch.loggers.logger import Logger

    from steplake.lightning import SteplakeLogger

    assert issubclass(SteplakeLogger, Logger)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers is not installed")
def test_huggingface_callback_is_a_callback():
    from transformers import TrainerCallback

    from steplake.huggingface import SteplakeCallback

    assert issubclass(SteplakeCallback, TrainerCallback)
