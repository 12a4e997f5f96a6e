"""A Hugging Face ``transformers`` callback that writes to steplake.

    from steplake.huggingface import SteplakeCallback, StopOnEventCallback
    logging = SteplakeCallback(project="glue")
    trainer = Trainer(..., callbacks=[logging, StopOnEventCallback(logging, watch_for={"train/loss": {"spike": True}})])
"""

from __future__ import annotations

import numbers
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as error:
    raise ImportError("steplake.huggingface needs transformers: pip install transformers") from error

import steplake
from steplake._events import StopSignal
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


class StopOnEventCallback(TrainerCallback):  # type: ignore[misc]
    """Stops training (``control.should_training_stop``) at the end of the
    step in which the steplake server reports an event of the run: any
    event, or one whose label, condition id or series is in ``labels``.

    ``source`` is the :class:`~steplake.Run`, or the :class:`SteplakeCallback`
    that logs it (listed before this one). ``watch_for`` maps series to
    ``Run.watch_for`` keyword arguments, registered when training begins.
    With ``save=True`` (the default) the Trainer also saves a checkpoint
    as it stops, so the run can resume from there after a fix.
    """

    def __init__(self, source: Run | SteplakeCallback, labels: Any = None,
                 watch_for: dict[str, dict[str, Any]] | None = None, save: bool = True) -> None:
        self._source = source
        self._labels = labels
        self._watch_for = dict(watch_for or {})
        self._save = save
        self._signal: StopSignal | None = None
        #: The event that stopped training, once one did.
        self.event: Any = None

    def _run(self) -> Run | None:
        return self._source if isinstance(self._source, Run) else self._source._run

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        run = self._run()
        if run is None or not state.is_world_process_zero:
            return
        for series, options in self._watch_for.items():
            run.watch_for(series, **options)
        self._signal = StopSignal(run, self._labels)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self._signal is None or self._signal.event is None or self.event is not None:
            return control
        self.event = self._signal.event
        control.should_training_stop = True
        if self._save:
            control.should_save = True
        return control
