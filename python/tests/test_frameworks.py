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
def test_lightning_logger_logs_a_training_run(server, tmp_path):
    import lightning

    from steplake.lightning import SteplakeLogger

    class Regression(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters({"lr": 0.05})
            self.layer = torch.nn.Linear(3, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    data = torch.utils.data.TensorDataset(torch.randn(64, 3), torch.randn(64, 1))
    logger = SteplakeLogger(project="lightning", name="regression", server=server.address)
    trainer = lightning.Trainer(
        max_epochs=2, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(Regression(), torch.utils.data.DataLoader(data, batch_size=8))
    points = rows(server, "SELECT count(*) AS n FROM scalars WHERE name = 'train/loss'")
    assert points[0]["n"] == 16
    run = rows(server, "SELECT project, name, status, config FROM runs")
    assert run[0]["project"] == "lightning" and run[0]["status"] == "finished"
    assert '"lr": 0.05' in run[0]["config"]


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers is not installed")
def test_huggingface_callback_logs_a_trainer_run(server, tmp_path):
    import transformers

    from steplake.huggingface import SteplakeCallback

    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=2,
    )
    model = transformers.BertForSequenceClassification(config)

    class Tiny(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 32

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": torch.tensor([1 + i % 7, 2, 3, 4]), "labels": torch.tensor(i % 2)}

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=1,
        logging_steps=2, report_to=[], save_strategy="no", use_cpu=True, run_name="tiny-bert",
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Tiny(),
        callbacks=[SteplakeCallback(project="hf", server=server.address, watch=4)],
    )
    trainer.train()
    names = {r["name"] for r in rows(server, "SELECT DISTINCT name FROM scalars")}
    assert "loss" in names and "learning_rate" in names
    steps = [r["step"] for r in rows(server, "SELECT step FROM scalars WHERE name = 'loss' ORDER BY step")]
    assert steps == [2, 4, 6, 8]
    run = rows(server, "SELECT project, name, status FROM runs")
    assert run == [{"project": "hf", "name": "tiny-bert", "status": "finished"}]
    assert rows(server, "SELECT count(*) AS n FROM tensors")[0]["n"] > 0
