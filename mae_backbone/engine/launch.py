"""Launching: distributed set-up (NCCL on GPUs, gloo on CPU), lr scaling, precision, Runner / FlexibleRunner
construction, and the checks a run needs before its first iteration."""
from __future__ import annotations

import gc
import logging
import os
import subprocess
import weakref
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
    """Destroy and free the process group (if any) at the end of a finished run, once the runner is no longer
    referenced. Not after a failure: the barrier would wait for ranks still inside a collective (until the group's
    timeout); a failing rank should just raise, and torchrun / srun stop the others.

    ``destroy_process_group`` only unregisters the group: the backend object lives on while anything holds it, and
    mmengine's Runner sits in reference cycles with its DDP wrapper, which holds the group. Left to the cyclic
    collector, the gloo backend (its worker threads and their pending work) can be freed while the interpreter is
    being torn down, where it aborts the process ("terminate called without an active exception", SIGABRT) after a
    finished run. So the runner's cycles are collected first, then the ranks synchronise, the group is destroyed and
    collected, and a group that is still referenced is reported.
    """
    gc.collect()
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        group = weakref.ref(dist.group.WORLD)
    except TypeError:  # a torch whose ProcessGroup takes no weak references: nothing to check
        group = lambda: None  # noqa: E731
    dist.barrier()
    dist.destroy_process_group()
    gc.collect()
    if group() is not None:
        holders = _holders(group())
        logger.warning("the process group is still referenced after destroy_process_group (by %s): it will be freed "
                       "at interpreter exit, where gloo can abort the process. Drop the runner / DDP model before "
                       "calling shutdown_distributed().", ", ".join(holders) or "an object outside the gc")


def _holders(obj) -> list:
    """Type names of what refers to ``obj`` (an instance whose ``__dict__`` holds it, rather than the dict)."""
    names = set()
    for ref in gc.get_referrers(obj):
        owners = [o for o in gc.get_referrers(ref) if getattr(o, "__dict__", None) is ref] if isinstance(ref, dict) else []
        names.update(type(o).__name__ for o in owners or [ref])
    return sorted(names - {"frame"})


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


_COSINE = ("CosineAnnealingLR", "LayerScaledCosineAnnealingLR", "CosineAnnealingParamScheduler")


def _epoch_schedulers(cfg: Config):
    scheds = cfg.get("param_scheduler") or []
    scheds = [scheds] if isinstance(scheds, dict) else scheds
    return [s for s in scheds if s.get("by_epoch", True)]


_WARMUPS = ("LinearLR", "ConstantLR")


def set_epochs(cfg: Config, epochs: int) -> Config:
    """Retime an epoch-based config to ``epochs``: ``train_cfg.max_epochs``, the ``epochs`` variable if the config
    has one, and every epoch-based scheduler that ended with training (``end`` equal to the old ``max_epochs`` or
    None): its ``end``, a cosine's ``T_max`` (which must span ``begin``..``end``) and a step schedule's milestones
    (scaled with the epochs). Warm-ups keep their length, iteration-counted ones included. Overriding
    ``train_cfg.max_epochs`` alone would leave the cosine ending at the old epoch count; this is what
    ``--cfg-options epochs=E`` runs. Anything it cannot retime faithfully is refused, naming the scheduler.
    On ``--resume`` mmengine restores the schedulers from the checkpoint: retime a run before it starts."""
    epochs = int(epochs)
    if cfg.train_cfg.get("type", "EpochBasedTrainLoop") != "EpochBasedTrainLoop" or "max_epochs" not in cfg.train_cfg:
        raise ValueError(f"set_epochs needs an epoch-based train_cfg with max_epochs, got {dict(cfg.train_cfg)}")
    old = int(cfg.train_cfg.max_epochs)
    scheds = cfg.get("param_scheduler") or []
    scheds = [scheds] if isinstance(scheds, dict) else scheds
    by_iter = [s.get("type") for s in scheds if not s.get("by_epoch", True)
               and not (s.get("type") in _WARMUPS and s.get("begin", 0) == 0 and s.get("end") is not None)]
    if by_iter:
        raise ValueError(f"cannot retime to {epochs} epochs: schedulers {by_iter} count iterations (by_epoch=False); "
                         f"give them by_epoch=True with convert_to_iter_based=True, or edit param_scheduler")
    edits = []  # (scheduler, changes): everything is checked before anything changes
    for sched in _epoch_schedulers(cfg):
        kind, begin, end = sched.get("type"), sched.get("begin", 0), sched.get("end")
        ends_with_training = end is None or end == old
        if begin >= epochs or (not ends_with_training and end > epochs):
            raise ValueError(f"cannot retime to {epochs} epochs: scheduler {kind} runs epochs "
                             f"{begin}..{end}; choose more epochs or edit param_scheduler")
        if not ends_with_training:
            continue  # a warm-up or an early phase: keeps its epochs
        periodic = [k for k in ("step_size", "total_steps", "periods") if k in sched]
        if periodic:
            raise ValueError(f"cannot retime {kind} ({', '.join(periodic)}): edit param_scheduler for {epochs} epochs")
        changes = {} if end is None else {"end": epochs}
        if kind in _COSINE and "T_max" in sched:
            if sched["T_max"] != (old if end is None else end) - begin:
                raise ValueError(f"cannot retime {kind} with T_max={sched['T_max']} over epochs {begin}..{end}: "
                                 f"T_max does not span the schedule; edit param_scheduler")
            changes["T_max"] = epochs - begin
        if "milestones" in sched:  # counted from begin; one at or past the last epoch would never fire
            span_old, span_new = old - begin, epochs - begin
            moved = [min(span_new - 1, max(1, round(m * span_new / span_old))) for m in sched["milestones"]]
            if any(b <= a for a, b in zip(moved, moved[1:])) or span_new < 2:
                raise ValueError(f"cannot retime {kind} milestones {list(sched['milestones'])} of {old} epochs to "
                                 f"{epochs}: they would merge ({moved}); choose more epochs or set milestones")
            changes["milestones"] = moved
        edits.append((sched, changes))
    for sched, changes in edits:
        sched.update(changes)
    cfg.train_cfg.max_epochs = epochs
    if "epochs" in cfg:
        cfg.epochs = epochs
    return cfg


def rebase_data_root(cfg: Config, old: str, new: str) -> int:
    """Replace the prefix ``old`` by ``new`` in every string of ``cfg`` that starts with it; returns how many.

    Configs write paths as ``data_root + 'train'``, resolved when the file is read, so overriding ``data_root``
    afterwards changes nothing by itself."""
    if old.endswith("/") and not new.endswith("/"):
        new += "/"
    old_dir = old if old.endswith("/") else old + "/"  # a path boundary: data/coco must not move data/coco_extra
    count = 0

    def moved(value: str) -> str:
        if value == old or value == old_dir.rstrip("/"):
            return new
        return new.rstrip("/") + "/" + value[len(old_dir):] if value.startswith(old_dir) else value

    def walk(node):
        nonlocal count
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            if isinstance(value, str) and moved(value) != value:
                node[key] = moved(value)
                count += 1
            elif isinstance(value, (dict, list)):
                walk(value)
    for key in list(cfg.keys()):
        value = cfg[key]
        if isinstance(value, (dict, list)):
            walk(value)
    return count


def apply_cfg_options(cfg: Config, options: Optional[dict]) -> Config:
    """``--cfg-options``: ``merge_from_dict``, plus the variables other values are derived from when the config is
    read: ``epochs=E`` retimes the schedule (:func:`set_epochs`), ``data_root=DIR`` moves every path under the
    config's data root."""
    if not options:
        return cfg
    old_root = cfg.get("data_root")
    cfg.merge_from_dict(options)
    if "data_root" in options:
        if not isinstance(old_root, str) or not old_root:
            raise ValueError("data_root=...: this config has no data_root variable; set the dataset paths themselves")
    if "data_root" in options and str(options["data_root"]).rstrip("/") != old_root.rstrip("/"):
        moved = rebase_data_root(cfg, old_root, str(options["data_root"]))
        if not moved:
            logger.warning("data_root=%s moved no dataset path (none starts with the config's %s)",
                           options["data_root"], old_root)
        logger.info("data_root %s -> %s: %d paths moved", old_root, options["data_root"], moved)
    if "epochs" in options:
        set_epochs(cfg, options["epochs"])
    return cfg


def check_schedule(cfg: Config) -> None:
    """Warn when an epoch-based lr schedule does not end with training (``train_cfg.max_epochs`` overridden
    alone): a cosine then stops short of its floor, or the lr stays flat for the extra epochs."""
    if cfg.get("train_cfg") is None or "max_epochs" not in cfg.train_cfg:
        return
    ends = [s.get("end") for s in _epoch_schedulers(cfg) if s.get("end") is not None]
    max_epochs = cfg.train_cfg.max_epochs
    if ends and max(ends) != max_epochs:
        logger.warning("the lr schedule ends at epoch %s but training runs %s epochs: the schedule is %s. To retime "
                       "the whole schedule use --cfg-options epochs=%s (mae_backbone.engine.set_epochs)",
                       max(ends), max_epochs, "cut short" if max(ends) > max_epochs else "flat at its end value",
                       max_epochs)


# mmseg's layer-decay constructors -> the MAEViT-aware ones ``downstream`` registers beside them (mmseg's rule
# groups layers by the parameter name ``backbone.layers.N``; MAEViT's blocks are ``backbone.blocks.N``)
MMSEG_LAYER_DECAY_CONSTRUCTORS = {
    "LayerDecayOptimizerConstructor": "MAEViTLayerDecayOptimizerConstructor",
    "LearningRateDecayOptimizerConstructor": "MAEViTLearningRateDecayOptimizerConstructor",
}


def _type_names(value) -> set:
    """The names a config ``type`` / ``constructor`` stands for: a registry name without its scope
    (``'mmseg.MAEViT'`` -> ``MAEViT``), or a class's name and its bases' names."""
    if isinstance(value, str):
        return {value.rsplit(".", 1)[-1]}
    return {c.__name__ for c in getattr(value, "__mro__", ())}


def check_layer_decay_constructor(cfg: Config) -> None:
    """Refuse mmseg's ``LayerDecayOptimizerConstructor`` / ``LearningRateDecayOptimizerConstructor`` on a model
    whose backbone is an ``MAEViT``: mmseg's rule assigns layers by the parameter name ``backbone.layers.N``, finds
    no such name among MAEViT's ``backbone.blocks.N`` and trains every block at lr scale 1 (only the patch
    embedding and position table decayed), silently. The error names the fix: the MAEViT-aware constructor of
    the same ``paramwise_cfg`` that ``downstream`` registers in mmseg (``MAEViTLayerDecayOptimizerConstructor``
    / ``MAEViTLearningRateDecayOptimizerConstructor``). Any other backbone is left to mmseg's rule."""
    optim = cfg.get("optim_wrapper")
    model = cfg.get("model")
    if not isinstance(optim, dict) or not isinstance(model, dict):
        return
    constructor = optim.get("constructor")
    if constructor is None:
        return
    if not isinstance(constructor, str) and not str(getattr(constructor, "__module__", "")).startswith("mmseg"):
        return  # a class object: only mmseg's own classes use mmseg's rule
    names = _type_names(constructor) & set(MMSEG_LAYER_DECAY_CONSTRUCTORS)
    if not names:
        return
    module = model.get("module") if isinstance(model.get("module"), dict) else model  # a TTA wrapper's model
    backbone = module.get("backbone")
    if not isinstance(backbone, dict) or "MAEViT" not in _type_names(backbone.get("type")):
        return
    name = next(n for n in MMSEG_LAYER_DECAY_CONSTRUCTORS if n in names)  # LayerDecay... first (a subclass)
    if cfg.get("default_scope") == "mmdet":  # mmdet's ConvNeXt-era constructor of that name: the same trap
        fix = ("constructor='LayerDecayOptimWrapperConstructor' with paramwise_cfg=dict(layer_decay=RATE) "
               "(mae-backbone's layer_id() grouping, as configs/mask_rcnn use)")
    else:
        fix = (f"constructor='{MMSEG_LAYER_DECAY_CONSTRUCTORS[name]}' (same paramwise_cfg; registered in mmseg by "
               f"custom_imports=dict(imports=['downstream']))")
    raise ValueError(
        f"optim_wrapper.constructor={name!r} groups layers by OpenMMLab parameter names (mmseg: "
        f"'backbone.layers.N'); the MAEViT backbone's blocks are 'backbone.blocks.N', so every block would train at "
        f"lr scale 1 (only the patch embedding and position table decayed). Use {fix}")


def build_runner(cfg: Config, launcher: str = "none", amp: Optional[str] = None, train: bool = True):
    """Initialise distributed state, derive lr, fit the precision to the device and build the runner ``cfg``
    names: mmengine's ``Runner`` (DDP), or ``FlexibleRunner`` for ``runner_type='FlexibleRunner'`` with its
    ``strategy`` (FSDP; DeepSpeed when installed). A config whose strategy would be ignored is refused.

    ``amp``: ``bf16`` / ``fp16`` / ``off`` overrides the config's precision (``tools/train.py --amp``); either way
    :func:`~mae_backbone.engine.amp.set_amp` makes it what the device supports. Before the first iteration, a
    model on CUDA that runs mmcv's ops is checked against an mmcv compiled without CUDA kernels; a non-finite loss
    stops every run (:class:`~mae_backbone.engine.guards.FiniteLossHook`). mmseg's layer-decay constructor on an
    ``MAEViT`` backbone is refused for training (``train``; :func:`check_layer_decay_constructor`). A config's
    ``autocast_modules`` runs those parts in mixed precision
    (:class:`~mae_backbone.engine.hooks.AutocastModulesHook`)."""
    from mmengine.runner import FlexibleRunner, Runner

    from .amp import set_amp
    from .fsdp import runner_type
    from .guards import FiniteLossHook
    from .hooks import AutocastModulesHook

    if train:  # an evaluation builds no optimizer: a stale constructor name harms nothing there
        check_layer_decay_constructor(cfg)
    kind = runner_type(cfg, launcher)  # refuse a bad strategy before any process group exists; CPU DDP set-up
    world_size = init_distributed(launcher, port=int(os.environ.get("MASTER_PORT", 29500)))
    cfg.launcher = launcher
    scale_lr(cfg, world_size)
    check_schedule(cfg)
    set_amp(cfg, amp)
    runner = (FlexibleRunner if kind == "FlexibleRunner" else Runner).from_cfg(cfg)
    runner.register_hook(dict(type="MMCVOpsCheckHook"), priority="VERY_HIGH")
    if cfg.get("autocast_modules"):
        runner.register_hook(AutocastModulesHook(cfg.autocast_modules), priority="VERY_HIGH")
    if not any(isinstance(h, FiniteLossHook) for h in runner.hooks):  # a config may add its own (settings)
        runner.register_hook(FiniteLossHook())
    return runner
