"""Hooks that stop a run going wrong, early and with the fix named: a model on CUDA running mmcv's ops from an
mmcv built without CUDA kernels, and a non-finite loss (or a run of fp16 steps skipped for overflow).
``build_runner`` adds both to every run."""
from __future__ import annotations

import logging
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from .hooks import bare_model

logger = logging.getLogger(__name__)


def mmcv_ops_needed(model: torch.nn.Module) -> bool:
    """Whether ``model`` runs mmcv's compiled ops: a submodule from ``mmcv.ops`` (RoIAlign, ...), or an mmdet
    detector (its post-processing calls ``mmcv.ops`` NMS functions, which are not modules)."""
    return (any(type(m).__module__.startswith("mmcv.ops") for m in model.modules())
            or type(model).__module__.startswith("mmdet."))


def _model_device(model: torch.nn.Module) -> Optional[torch.device]:
    return next((p.device for p in model.parameters()), None)


def check_mmcv_ops(model: torch.nn.Module) -> None:
    """Refuse a model on CUDA that runs mmcv's ops when the installed mmcv was compiled without CUDA kernels
    (it would fail inside the first iteration, in RoIAlign or NMS)."""
    model = bare_model(model)
    device = _model_device(model)
    if device is None or device.type != "cuda" or not mmcv_ops_needed(model):
        return
    import mmcv
    from mmcv.ops import get_compiling_cuda_version
    if get_compiling_cuda_version() == "not available":
        raise RuntimeError(
            f"{type(model).__name__} runs mmcv's ops (RoIAlign, NMS) on {device}, but the installed mmcv "
            f"{mmcv.__version__} was compiled without CUDA ops (mmcv.ops.get_compiling_cuda_version() says 'not "
            f"available'): rebuild it on this GPU machine with `make install` (it builds CUDA ops where a GPU and a "
            f"CUDA toolkit are present; MMCV_CUDA=1 forces them on a build host), see docs/install.md")


@HOOKS.register_module()
class MMCVOpsCheckHook(Hook):
    """Runs :func:`check_mmcv_ops` before training, validation or testing starts (``build_runner`` adds it)."""
    priority = "VERY_HIGH"

    def before_run(self, runner) -> None:
        if isinstance(runner.model, torch.nn.Module):
            check_mmcv_ops(runner.model)


class NonFiniteLossError(RuntimeError):
    """Training stopped on a NaN / inf loss, or on a run of fp16 steps skipped for overflowing gradients."""


_FIXES = ("likely fixes: a lower lr or a longer warm-up (optim_wrapper.optimizer.lr, param_scheduler), fp32 to rule "
          "out mixed-precision overflow (tools/train.py --amp off), gradient clipping (optim_wrapper.clip_grad="
          "dict(max_norm=1.0)), and a look at this batch's data")


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stops training at the first non-finite loss, before a checkpoint of that iteration is written.

    The official MAE code exits on a non-finite loss (engine_pretrain.py ``sys.exit(1)``); mmdet has
    ``CheckInvalidLossHook``. This checks every term the model returns, every iteration, on every rank (a flag
    all-reduced under DDP, so all ranks stop together instead of waiting on a collective), and raises
    :class:`NonFiniteLossError` naming the iteration, the terms, the last good checkpoint and the likely fixes.
    It runs before ``CheckpointHook`` (priority ABOVE_NORMAL vs VERY_LOW), so the last good checkpoint is never
    overwritten by one with poisoned weights.

    Under fp16 loss scaling (``AmpOptimWrapper``) a step whose gradients overflow is skipped and the scale halved:
    ``max_skipped_steps`` consecutive skipped optimizer steps (the scale divided by 2 ** 30 by default, far past
    the few halvings of a normal start) stop the run the same way. ``build_runner`` adds this hook to every run.
    """
    priority = "ABOVE_NORMAL"

    def __init__(self, max_skipped_steps: int = 30):
        if max_skipped_steps < 1:
            raise ValueError(f"max_skipped_steps must be >= 1, got {max_skipped_steps}")
        self.max_skipped_steps = int(max_skipped_steps)
        self.skipped = 0
        self._scale: Optional[float] = None

    @staticmethod
    def _values(outputs) -> dict:
        """Each logged term as a float64 CPU tensor (scalars from parse_losses; lists tolerated)."""
        out = {}
        for name, value in (outputs or {}).items():
            if isinstance(value, (list, tuple)):
                value = torch.stack([torch.as_tensor(v).detach().reshape(-1)[0].cpu() for v in value])
            out[name] = torch.as_tensor(value.detach().cpu() if torch.is_tensor(value) else value, dtype=torch.float64)
        return out

    def _any_rank(self, flag: bool) -> bool:
        from mmengine.dist import all_reduce, get_world_size
        if get_world_size() == 1:
            return flag
        box = torch.tensor([1.0 if flag else 0.0])
        all_reduce(box, op="max")
        return bool(box.item() > 0)

    def _last_ckpt(self, runner) -> str:
        last = runner.message_hub.get_info("last_ckpt")
        return f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        values = self._values(outputs)
        bad = [name for name, v in values.items() if not torch.isfinite(v).all()]
        if self._any_rank(bool(bad)):
            show = lambda v: f"{v.item():.4g}" if v.numel() == 1 else str(v.tolist())  # noqa: E731
            terms = ", ".join(f"{k}={show(values[k])}" for k in bad) or "finite here, non-finite on another rank"
            raise NonFiniteLossError(
                f"non-finite loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}): {terms} (all terms: "
                f"{', '.join(f'{k}={show(v)}' for k, v in values.items())}). Training stopped before this "
                f"iteration's checkpoint; {self._last_ckpt(runner)}. {_FIXES}")
        self._count_skipped_steps(runner)

    def _count_skipped_steps(self, runner) -> None:
        wrapper = getattr(runner, "optim_wrapper", None)
        scaler = getattr(wrapper, "loss_scaler", None)
        if scaler is None or not callable(getattr(scaler, "get_scale", None)):
            return
        if callable(getattr(wrapper, "should_update", None)) and not wrapper.should_update():
            return  # accumulating: no optimizer step this iteration
        scale = float(scaler.get_scale())
        if self._scale is not None:
            self.skipped = self.skipped + 1 if scale < self._scale else 0
        self._scale = scale
        if self.skipped >= self.max_skipped_steps:
            raise NonFiniteLossError(
                f"fp16 loss scaling skipped {self.skipped} optimizer steps in a row (gradients overflowed each time; "
                f"the scale is now {scale:.3g}) at iteration {runner.iter + 1}: the model is not training. "
                f"Training stopped; {self._last_ckpt(runner)}. bf16 (tools/train.py --amp bf16 on hardware with "
                f"native bf16) or fp32 (--amp off) avoid the overflow; {_FIXES}")
