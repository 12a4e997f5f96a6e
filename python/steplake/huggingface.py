"""A Hugging Face ``transformers`` callback that writes to steplake.

    from steplake.huggingface import SteplakeCallback
    trainer = Trainer(..., callbacks=[SteplakeCallback(project="glue")])
"""

from __future__ import annotations

import numbers
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as error:
    raise ImportError("steplake.huggingface needs transformers: pip install transformers") from error

import steplake
from steplake.run import Run


class SteplakeCallback(TrainerCallback):  # type: ignore[misc]
    """Logs what the Trainer logs (loss, learning rate, eval metrics) at its
    global step, with the training arguments as the run's config.

    Pass ``run=`` to log into a run you created, ``watch=N`` to also log
    weight and gradient statistics every N steps; other arguments go to
    :func:`steplake.init`.
    """

    def __init__(self, run: Run | None = None, watch: int | None = None, **init_options: Any) -> None:
        self._run = run
        self._owns_run = run is None
        self._watch_every = watch
        self._init_options = init_options

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if self._run is None:
            options = {"name": getattr(args, "run_name", None), **self._init_options}
            self._run = steplake.init(config=args.to_dict(), **options)
        if self._watch_every and model is not None:
            steplake.watch(model, self._run, every=self._watch_every,
                           step_fn=lambda: state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if self._run is None or not state.is_world_process_zero or not logs:
            return
        values = {k: v for k, v in logs.items() if isinstance(v, numbers.Real)}
        self._run.log(values, step=state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._run is not None and self._owns_run and state.is_world_process_zero:
            self._run.finish()
