"""Launching: distributed set-up (NCCL on GPUs, gloo on CPU), lr scaling, precision, Runner / FlexibleRunner
construction, and the checks a run needs before its first iteration."""
from __future__ import annotations

import logging
import os
import subprocess
from datetime import timedelta
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.config import Config

logger = logging.getLogger(__name__)
LAUNCHERS = ("none", "pytorch", "slurm")


def _slurm_env(port: int) -> None:
    """Fill torch.distributed's env variables from SLURM's."""
    os.environ.setdefault("RANK", os.environ["SLURM_PROCID"])
    os.environ.setdefault("WORLD_SIZE", os.environ["SLURM_NTASKS"])
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")  # one task per GPU on each node
    if "MASTER_ADDR" not in os.environ:
        nodes = os.environ["SLURM_NODELIST"]
        first = subprocess.check_output(["scontrol", "show", "hostnames", nodes], text=True).split()[0]
        os.environ["MASTER_ADDR"] = first
    os.environ.setdefault("MASTER_PORT", str(port))


def init_distributed(launcher: str, port: int = 29500, timeout_s: int = 1800) -> int:
    """Initialise torch.distributed for ``pytorch`` (torchrun) or ``slurm``; returns the world size.

    On CUDA machines this binds the local GPU and uses NCCL; without CUDA it uses gloo
    (mmengine's own ``init_dist`` insists on CUDA).
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; choose one of {LAUNCHERS}")
    if launcher == "none":
        return 1
    if dist.is_initialized():
        return dist.get_world_size()
    if launcher == "slurm":
        _slurm_env(port)
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"launcher={launcher!r} but {missing} are not set: start through torchrun "
                           f"(tools/dist_train.sh) or srun (tools/slurm_train.sh)")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    logger.info("initialised %s process group: rank %d of %d", backend, dist.get_rank(), dist.get_world_size())
    return dist.get_world_size()


def shutdown_distributed() -> None:
    """Destroy the process group (if any) before exit: gloo aborts a process that exits with it alive."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def scale_lr(cfg: Config, world_size: int) -> Optional[float]:
    """If ``optim_wrapper.optimizer.lr`` is None, set lr = blr * effective batch / 256 (MAE's rule).

    Effective batch = per-GPU batch x accumulation steps x world size. Returns the lr set.
    """
    opt = cfg.optim_wrapper.optimizer
    if opt.get("lr") is not None:
        return None
    if cfg.get("blr") is None:
        raise ValueError("optimizer lr is None and the config has no blr: set one of them")
    eff = cfg.train_dataloader.batch_size * cfg.optim_wrapper.get("accumulative_counts", 1) * world_size
    opt.lr = cfg.blr * eff / 256
    logger.info("lr = blr %.3g x effective batch %d / 256 = %.4g", cfg.blr, eff, opt.lr)
    return opt.lr


def build_runner(cfg: Config, launcher: str = "none", amp: Optional[str] = None):
    """Initialise distributed state, derive lr, fit the precision to the device and build the runner ``cfg``
    names: mmengine's ``Runner`` (DDP), or ``FlexibleRunner`` for ``runner_type='FlexibleRunner'`` with its
    ``strategy`` (FSDP; DeepSpeed when installed). A config whose strategy would be ignored is refused.

    ``amp``: ``bf16`` / ``fp16`` / ``off`` overrides the config's precision (``tools/train.py --amp``); either way
    :func:`~mae_backbone.engine.amp.set_amp` makes it what the device supports. Before the first iteration, a
    model on CUDA that runs mmcv's ops is checked against an mmcv compiled without CUDA kernels."""
    from mmengine.runner import FlexibleRunner, Runner

    from .amp import set_amp
    from .fsdp import runner_type

    kind = runner_type(cfg, launcher)  # refuse a bad strategy before any process group exists; CPU DDP set-up
    world_size = init_distributed(launcher, port=int(os.environ.get("MASTER_PORT", 29500)))
    cfg.launcher = launcher
    scale_lr(cfg, world_size)
    set_amp(cfg, amp)
    runner = (FlexibleRunner if kind == "FlexibleRunner" else Runner).from_cfg(cfg)
    runner.register_hook(dict(type="MMCVOpsCheckHook"), priority="VERY_HIGH")
    return runner
