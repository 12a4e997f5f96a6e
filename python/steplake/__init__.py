"""steplake: log training telemetry from Python, and query it with SQL.

Trainers::

    import steplake
    with steplake.init(project="mnist", name="baseline", config={"lr": 3e-4}) as run:
        for step in range(1000):
            run.log({"loss": loss, "acc": acc}, step=step)

Notebooks::

    steplake.connect().sql("SELECT step, value FROM scalars WHERE name = 'loss'").df()

Framework hooks: :func:`steplake.watch` (PyTorch), ``steplake.lightning.SteplakeLogger``
(Lightning) and ``steplake.huggingface.SteplakeCallback`` (transformers), each
importable when its framework is installed. ``python -m steplake sync DIR``
uploads what a run left in its spool while the server was unreachable.
"""

from __future__ import annotations

from typing import Any

from steplake.query import Connection, QueryError, QueryResult, connect
from steplake.run import DEFAULT_SERVER, Run, init

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SERVER",
    "Connection",
    "QueryError",
    "QueryResult",
    "Run",
    "connect",
    "init",
    "watch",
    "__version__",
]


def watch(model: Any, run: Run, **options: Any) -> Any:
    """Logs a PyTorch model's weights, gradients and activations (see :mod:`steplake.torch`)."""
    from steplake.torch import watch as _watch

    return _watch(model, run, **options)
