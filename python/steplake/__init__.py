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

import importlib
from typing import TYPE_CHECKING, Any

from steplake._address import DEFAULT_SERVER

if TYPE_CHECKING:
    from steplake.query import Connection, QueryError, QueryResult, connect
    from steplake._events import Event, StopSignal, watch_project
    from steplake.run import Run, init

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SERVER",
    "Connection",
    "Event",
    "StopSignal",
    "watch_project",
    "QueryError",
    "QueryResult",
    "Run",
    "connect",
    "init",
    "watch",
    "__version__",
]

# Imported on first use, so that ``import steplake`` is quick: queries need
# pyarrow.flight and logging needs grpc, and neither needs the other.
_LAZY = {
    "Connection": "steplake.query",
    "QueryError": "steplake.query",
    "QueryResult": "steplake.query",
    "connect": "steplake.query",
    "Event": "steplake._events",
    "StopSignal": "steplake._events",
    "watch_project": "steplake._events",
    "Run": "steplake.run",
    "init": "steplake.run",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'steplake' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def watch(model: Any, run: Run, **options: Any) -> Any:
    """Logs a PyTorch model's weights, gradients and activations (see :mod:`steplake.torch`)."""
    from steplake.torch import watch as _watch

    return _watch(model, run, **options)
