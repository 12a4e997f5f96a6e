"""Logging through the package into the real server, read back with SQL."""

from __future__ import annotations

import math

import numpy as np
import pytest

import steplake


def rows(server, sql: str) -> list[dict]:
    return steplake.connect(server.address).sql(sql).arrow().to_pylist()


def test_log_finish_and_read_back(server):
    with steplake.init(project="proj", name="first", config={"lr": 0.001, "layers": 2},
                       tags=["a", "b"], server=server.address) as run:
        for step in range(1000):
            run.log({"loss": 1.0 / (step + 1), "acc": step / 1000}, step=step)
        run.log({"loss": float("nan")}, step=1000)
        run.log({"loss": float("-inf")}, step=1001)
    counts = rows(server, "SELECT name, count(*) AS n, max(step) AS last FROM scalars "
                          f"WHERE run_id = '{run.id}' GROUP BY name ORDER BY name")
    assert counts == [{"name": "acc", "n": 1000, "last": 999}, {"name": "loss", "n": 1002, "last": 1001}]
    values = rows(server, "SELECT step, value FROM scalars WHERE name = 'loss' AND step IN (0, 999, 1000, 1001) ORDER BY step")
    assert values[0]["value"] == 1.0
    assert values[1]["value"] == 1.0 / 1000
    assert math.isnan(values[2]["value"])
    assert values[3]["value"] == float("-inf")
    meta = rows(server, f"SELECT project, name, status, config, tags FROM runs WHERE run_id = '{run.id}'")
    assert meta == [{"project": "proj", "name": "first", "status": "finished",
                     "config": '{"lr": 0.001, "layers": 2}', "tags": ["a", "b"]}]


def test_steps_default_to_one_past_the_last(server):
    run = steplake.init(server=server.address)
    run.log({"x": 1.0})
    run.log({"x": 2.0})
    run.log({"x": 3.0}, step=10)
    run.log({"x": 4.0})
    run.finish()
    assert rows(server, "SELECT step, value FROM scalars ORDER BY step") == [
        {"step": 0, "value": 1.0}, {"step": 1, "value": 2.0},
        {"step": 10, "value": 3.0}, {"step": 11, "value": 4.0},
    ]


def test_numpy_scalars_and_bad_values_never_raise(server, capfd):
    run = steplake.init(server=server.address)
    run.log({"f32": np.float32(0.5), "i64": np.int64(3), "flag": True}, step=0)
    run.log({"bad": "not a number", "good": 1.5}, step=1)
    run.log({"x": 1.0}, step=-5)
    run.log(None)  # type: ignore[arg-type]
    run.log_tensor("weird", np.zeros(3, dtype=np.complex64), step=0)
    run.finish()
    got = {r["name"]: r["value"] for r in rows(server, "SELECT name, value FROM scalars")}
    assert got == {"f32": 0.5, "i64": 3.0, "flag": 1.0, "good": 1.5}
    err = capfd.readouterr().err
    assert "not numbers" in err
    assert "negative" in err
    assert "complex64" in err


def test_bulk_logging(server):
    steps = np.arange(100_000)
    run = steplake.init(server=server.address, batch_points=30_000)
    run.log_many({"a": np.sin(steps / 100), "b": steps * 2.0}, steps=steps)
    run.finish()
    got = rows(server, "SELECT name, count(*) AS n, sum(value) AS s FROM scalars GROUP BY name ORDER BY name")
    assert got[0]["name"] == "a" and got[0]["n"] == 100_000
    assert got[0]["s"] == pytest.approx(float(np.sin(steps / 100).sum()))
    assert got[1] == {"name": "b", "n": 100_000, "s": float((steps * 2.0).sum())}


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "int8", "int32", "int64", "uint8", "bool"])
def test_tensors_come_back_with_dtype_and_shape(server, dtype):
    rng = np.random.default_rng(7)
    array = (rng.standard_normal((3, 5, 7)) * 10).astype(dtype)
    run = steplake.init(server=server.address)
    run.log_tensor("layer.weight", array, step=3)
    run.finish()
    result = steplake.connect(server.address).sql(
        "SELECT name, step, dtype, shape, tensor, tensor_f64, tensor_int FROM tensors")
    (restored,) = result.tensors()
    assert restored.dtype == np.dtype(dtype)
    assert restored.shape == (3, 5, 7)
    np.testing.assert_array_equal(restored, array)
    frame = result.df()
    np.testing.assert_array_equal(frame["tensor"][0], array)


def test_large_tensors_go_in_chunks(server):
    array = np.arange(3_000_000, dtype=np.float32)  # 12 MB: three 4 MiB chunks
    run = steplake.init(server=server.address)
    run.log_tensor("big", array, step=0)
    run.finish()
    (restored,) = steplake.connect(server.address).sql(
        "SELECT dtype, shape, tensor FROM tensors WHERE name = 'big'").tensors()
    np.testing.assert_array_equal(restored, array)


def test_log_tensor_waits_on_a_byte_budget(server):
    # Logged far faster than they can be sent: the queue stays within the
    # budget (it used to hold every tensor logged, 939 MiB for 200 x 4 MiB).
    budget = 4 << 20
    tensor = np.ones(1 << 18, dtype=np.float32)  # 1 MiB
    with steplake.init(name="tensor-budget", server=server.address,
                       max_queued_tensor_bytes=budget) as run:
        peak = 0
        for step in range(40):
            run.log_tensor("w", tensor * step, step=step)
            peak = max(peak, run._writer.tensor_bytes_queued)
        assert peak <= budget
    n = rows(server, f"SELECT count(*) AS n FROM tensors WHERE run_id = '{run.id}'")
    assert n == [{"n": 40}], "nothing is dropped by waiting"


def test_resume_continues_and_rewritten_steps_replace(server):
    run = steplake.init(name="long", server=server.address)
    for step in range(10):
        run.log({"loss": 10.0 - step}, step=step)
    run.finish("crashed")
    resumed = steplake.init(resume=run.id, server=server.address)
    for step in range(5, 15):  # back to the checkpoint at step 5
        resumed.log({"loss": 100.0 + step}, step=step)
    assert resumed.flush()
    assert resumed.resumed
    resumed.finish()
    got = rows(server, f"SELECT step, value FROM scalars WHERE run_id = '{run.id}' ORDER BY step")
    assert [r["step"] for r in got] == list(range(15))
    assert [r["value"] for r in got[:5]] == [10.0, 9.0, 8.0, 7.0, 6.0]
    assert [r["value"] for r in got[5:]] == [100.0 + s for s in range(5, 15)]
    assert rows(server, f"SELECT status FROM runs WHERE run_id = '{run.id}'") == [{"status": "finished"}]


def test_server_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("STEPLAKE_SERVER", server.address)
    with steplake.init(name="env") as run:
        run.log({"x": 1.0}, step=0)
    assert rows(server, "SELECT name FROM runs") == [{"name": "env"}]
    assert steplake.connect().sql("SELECT count(*) AS n FROM scalars").arrow().to_pylist() == [{"n": 1}]


def test_an_exception_in_the_block_marks_the_run_failed(server):
    with pytest.raises(RuntimeError):
        with steplake.init(server=server.address) as run:
            run.log({"x": 1.0}, step=0)
            raise RuntimeError("diverged")
    assert rows(server, "SELECT status FROM runs") == [{"status": "failed"}]


def test_a_bad_run_id_is_refused_at_once():
    with pytest.raises(ValueError, match="letters, digits"):
        steplake.init(run_id="no spaces please")


def test_framework_modules_explain_what_they_need():
    import importlib.util

    for module, framework in [("steplake.lightning", "lightning"), ("steplake.huggingface", "transformers")]:
        if importlib.util.find_spec(framework) is not None:
            continue
        with pytest.raises(ImportError, match=f"pip install {framework}"):
            __import__(module)


def test_a_script_that_never_calls_finish_exits_and_delivers(server):
    import subprocess
    import sys

    script = (
        "import steplake\n"
        f"run = steplake.init(name='no-finish', server='{server.address}')\n"
        "for step in range(2000):\n"
        "    run.log({'x': float(step)}, step=step)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert rows(server, "SELECT count(*) AS n FROM scalars") == [{"n": 2000}]
    assert rows(server, "SELECT status FROM runs") == [{"status": "finished"}]


def test_an_uncaught_exception_marks_the_run_crashed(server):
    import subprocess
    import sys

    script = (
        "import steplake\n"
        f"run = steplake.init(server='{server.address}')\n"
        "run.log({'x': 1.0}, step=0)\n"
        "raise SystemExit(__import__('math').sqrt(-1))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert rows(server, "SELECT status FROM runs") == [{"status": "crashed"}]


def test_config_can_grow_after_the_run_started(server):
    run = steplake.init(config={"lr": 0.1, "layers": 2}, server=server.address)
    run.log({"x": 1.0}, step=0)
    assert run.flush()
    run.update_config({"lr": 0.05, "seed": 7})
    run.finish()
    import json

    config = json.loads(rows(server, "SELECT config FROM runs")[0]["config"])
    assert config == {"lr": 0.05, "layers": 2, "seed": 7}


def test_a_refused_batch_is_skipped_and_the_ones_after_it_are_stored(server, capfd):
    run = steplake.init(server=server.address)
    for step in range(10):
        run.log({"ok": 1.0}, step=step)
    assert run.flush()
    run.log({"bad\nname": 1.0}, step=10)  # a control character: the server refuses it
    assert run.flush()
    for step in range(11, 21):
        run.log({"ok": 1.0}, step=step)
    run.finish()
    assert rows(server, f"SELECT count(*) AS n FROM scalars WHERE run_id = '{run.id}'") == [{"n": 20}]
    err = capfd.readouterr().err
    assert "control character" in err
    assert err.count("refused") == 1, err
