"""``steplake.watch``: per-parameter statistics of a PyTorch model.

Statistics are reduced on the tensor's own device (GPU tensors stay on the
GPU); only the resulting numbers cross to the CPU, in one transfer per
tensor. Whole tensors are copied only every ``tensors_every`` steps.

What is logged, every ``every`` steps (tensor names as in
``model.named_parameters()`` / ``named_modules()``):

- ``weights/NAME``: the parameter after the optimizer step that preceded the
  forward pass;
- ``grads/NAME``: the accumulated gradient, from
  ``Tensor.register_post_accumulate_grad_hook`` (so gradient accumulation
  over micro-batches is seen once, whole);
- ``activations/NAME``: each leaf module's output.

The step is ``step_fn()`` when given (e.g. ``lambda: trainer.global_step``),
else the number of training-mode forward passes of ``model`` so far.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch  # noqa: F401 - importing this module requires PyTorch

from steplake.run import Run
from steplake.v1 import ingest_pb2 as pb

#: Bins of the statistics histogram (the server's, too).
HISTOGRAM_BINS = 64
#: Quantile levels estimated from the histogram (as the server does).
QUANTILE_LEVELS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_WATCHABLE = ("weights", "grads", "activations")
_DTYPES = {
    "torch.float32": "f32", "torch.bfloat16": "bf16", "torch.float16": "f16",
    "torch.float64": "f64", "torch.int8": "i8", "torch.int16": "i16",
    "torch.int32": "i32", "torch.int64": "i64", "torch.uint8": "u8", "torch.bool": "bool",
}


def quantiles_from_histogram(histogram: list[int], lo: float, hi: float) -> list[float]:
    """The quantiles at ``QUANTILE_LEVELS``, interpolated within histogram bins."""
    total = sum(histogram)
    if total == 0 or hi <= lo:
        return [lo] * len(QUANTILE_LEVELS)
    width = (hi - lo) / len(histogram)
    out = []
    for q in QUANTILE_LEVELS:
        target, below, value = q * total, 0.0, hi
        for index, count in enumerate(histogram):
            if count > 0 and below + count >= target:
                inside = min(max((target - below) / count, 0.0), 1.0)
                value = min(max(lo + (index + inside) * width, lo), hi)
                break
            below += count
        out.append(value)
    return out


def tensor_statistics(tensor: "torch.Tensor") -> pb.TensorStatistics:
    """Statistics of ``tensor``, reduced on its device; one transfer to the CPU.

    NaN and ±Inf are counted and left out of everything else, as the server does.
    """
    import torch

    values = tensor.detach().reshape(-1)
    values = values.double() if values.dtype == torch.float64 else values.float()
    finite_mask = torch.isfinite(values)
    finite = values[finite_mask]
    numel = values.numel()
    if finite.numel() == 0:
        counts = torch.stack([torch.isnan(values).sum(), torch.isinf(values).sum()]).tolist()
        return pb.TensorStatistics(
            numel=numel, l2=0.0, nan_count=int(counts[0]), inf_count=int(counts[1]),
            histogram=[0] * HISTOGRAM_BINS,
        )
    lo, hi = finite.min(), finite.max()
    summary = torch.stack([
        finite.mean(), finite.std(unbiased=False) if finite.numel() > 1 else finite.new_zeros(()),
        lo, hi, torch.linalg.vector_norm(finite), finite.abs().max(),
        (finite == 0).sum().to(finite.dtype), torch.isnan(values).sum().to(finite.dtype),
        torch.isinf(values).sum().to(finite.dtype),
    ])
    if bool(hi > lo):
        histogram = torch.histc(finite, bins=HISTOGRAM_BINS, min=float(lo), max=float(hi))
    else:
        histogram = torch.zeros(HISTOGRAM_BINS, device=finite.device, dtype=finite.dtype)
        histogram[0] = finite.numel()
    numbers = torch.cat([summary, histogram.to(summary.dtype)]).cpu().tolist()
    mean, std, mn, mx, l2, abs_max, zeros, nans, infs = numbers[:9]
    bins = [int(round(c)) for c in numbers[9:]]
    return pb.TensorStatistics(
        numel=numel, mean=mean, std=std, min=mn, max=mx, l2=l2, abs_max=abs_max,
        nan_count=int(nans), inf_count=int(infs), zero_frac=zeros / finite.numel(),
        histogram=bins, quantiles=quantiles_from_histogram(bins, mn, mx),
    )


class Watch:
    """The hooks :func:`watch` installed; ``remove()`` takes them off."""

    def __init__(
        self,
        model: "torch.nn.Module",
        run: Run,
        every: int,
        log: Iterable[str],
        tensors_every: int | None,
        step_fn: Callable[[], int] | None,
    ) -> None:
        unknown = set(log) - set(_WATCHABLE)
        if unknown:
            raise ValueError(f"watch(log=...) takes {', '.join(_WATCHABLE)}; not {', '.join(sorted(unknown))}")
        if every < 1:
            raise ValueError("watch(every=...) must be >= 1")
        self.model, self.run, self.every = model, run, every
        self.kinds = set(log)
        self.tensors_every = tensors_every
        self.step_fn = step_fn
        self.forward_passes = 0
        self.step = 0
        self._handles: list[Any] = []
        self._handles.append(model.register_forward_pre_hook(self._before_forward))
        if "grads" in self.kinds:
            for name, parameter in model.named_parameters():
                if parameter.requires_grad:
                    self._handles.append(parameter.register_post_accumulate_grad_hook(
                        self._grad_hook(name)))
        if "activations" in self.kinds:
            for name, module in model.named_modules():
                if name and not any(True for _ in module.children()):
                    self._handles.append(module.register_forward_hook(self._activation_hook(name)))

    def _active(self) -> bool:
        return self.model.training and self.step % self.every == 0

    def _whole(self) -> bool:
        return bool(self.tensors_every) and self.step % int(self.tensors_every) == 0

    def _record(self, name: str, tensor: "torch.Tensor") -> None:
        try:
            dtype = _DTYPES.get(str(tensor.dtype), "f32")
            self.run.log_tensor_stats(name, tensor_statistics(tensor), self.step, dtype, list(tensor.shape))
            if self._whole():
                self.run.log_tensor(name, tensor, step=self.step)
        except Exception as error:  # noqa: BLE001 - never break training
            self.run._warn_once(f"watch:{name}", f"watch could not log {name}: {error!r}")

    def _before_forward(self, module: Any, inputs: Any) -> None:
        if not self.model.training:
            return
        self.step = int(self.step_fn()) if self.step_fn is not None else self.forward_passes
        self.forward_passes += 1
        if "weights" in self.kinds and self._active():
            import torch

            with torch.no_grad():
                for name, parameter in self.model.named_parameters():
                    self._record(f"weights/{name}", parameter)

    def _grad_hook(self, name: str) -> Callable[[Any], None]:
        def hook(parameter: Any) -> None:
            if self._active() and parameter.grad is not None:
                self._record(f"grads/{name}", parameter.grad)
        return hook

    def _activation_hook(self, name: str) -> Callable[[Any, Any, Any], None]:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            if self._active() and hasattr(output, "detach"):
                self._record(f"activations/{name}", output)
        return hook

    def remove(self) -> None:
        """Removes every hook."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def watch(
    model: "torch.nn.Module",
    run: Run,
    every: int = 100,
    log: Iterable[str] = ("weights", "grads"),
    tensors_every: int | None = None,
    step_fn: Callable[[], int] | None = None,
) -> Watch:
    """Logs statistics of ``model``'s weights, gradients and/or activations
    every ``every`` steps, and whole tensors every ``tensors_every`` steps
    (None: never). Returns the :class:`Watch`; ``.remove()`` stops it."""
    return Watch(model, run, every, log, tensors_every, step_fn)
