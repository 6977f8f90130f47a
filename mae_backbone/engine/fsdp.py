"""Sharded training with mmengine's ``FlexibleRunner``: the pieces an FSDP config names, and the config checks.

An FSDP config (``configs/mae/*fsdp*.py``)::

    runner_type = 'FlexibleRunner'
    strategy = dict(type='FSDPStrategy', state_dict_cfg='full',
                    model_wrapper=dict(auto_wrap_policy='vit_block_wrap_policy', use_orig_params=True,
                                       mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32')))

``vit_block_wrap_policy`` makes every transformer block (encoder and decoder) its own FSDP unit, so only one
block's full parameters exist at a time; activation checkpointing is the model's own ``grad_checkpointing``
(parameter names stay those of the model, so layer-wise lr decay and checkpoints read as without FSDP).
"""
from __future__ import annotations

import importlib.util
from typing import Dict, Optional
import torch
from mmengine._strategy import FSDPStrategy
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import FUNCTIONS, STRATEGIES
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from ..models.attention import Block

RUNNER_TYPES = ("Runner", "FlexibleRunner")
# strategies whose package is not a dependency of this project: refused with the package's name when missing
STRATEGY_PACKAGES = {"DeepSpeedStrategy": "deepspeed", "ColossalAIStrategy": "colossalai"}


def vit_block_wrap_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int = 0, **kwargs) -> bool:
    """FSDP auto-wrap policy: recurse everywhere, wrap each transformer :class:`Block` as its own unit."""
    return True if recurse else isinstance(module, Block)


if FUNCTIONS.get("vit_block_wrap_policy") is None:
    FUNCTIONS.register_module(name="vit_block_wrap_policy", module=vit_block_wrap_policy)


def is_fsdp(model: nn.Module) -> bool:
    """Whether ``model`` is torch's FullyShardedDataParallel (mmengine's wrapper included)."""
    return isinstance(model, FSDP)


class ResumableFSDPStrategy(FSDPStrategy):
    """mmengine 0.10.7's ``FSDPStrategy`` with optimizer state that saves and resumes on torch >= 2.1.

    mmengine calls ``FSDP.optim_state_dict_to_load(state, model, optimizer)``, the torch 2.0 argument order
    (torch 2.1 made it ``(model, optimizer, state)``), so ``--resume`` fails; and it hands the optimizer *wrapper*
    to ``FSDP.optim_state_dict``. Here FSDP sees the optimizer itself and an fp16 run's loss scale travels next
    to it. ``build_runner`` uses this class for ``strategy=dict(type='FSDPStrategy', ...)``."""

    _WRAPPER_STATE = ("loss_scaler", "base_param_settings")

    def optim_state_dict(self) -> dict:
        state = FSDP.optim_state_dict(self.model, self.optim_wrapper.optimizer)
        own = self.optim_wrapper.state_dict()  # the wrapper's own state: loss scale, logged base lr
        state.update({k: own[k] for k in self._WRAPPER_STATE if k in own})
        return state

    def load_optim_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        extra = {k: state_dict.pop(k) for k in self._WRAPPER_STATE if k in state_dict}
        state = FSDP.optim_state_dict_to_load(self.model, self.optim_wrapper.optimizer, state_dict)
        self.optim_wrapper.load_state_dict({**state, **extra})


if STRATEGIES.get("ResumableFSDPStrategy") is None:
    STRATEGIES.register_module(name="ResumableFSDPStrategy", module=ResumableFSDPStrategy)


def full_state_dict(model: nn.Module) -> Optional[Dict[str, torch.Tensor]]:
    """The whole state dict of an FSDP ``model``, on the CPU of rank 0 (None on the other ranks). Collective:
    every rank must call it. (Running the sharded model's forward on one rank cannot work: its units all-gather.)"""
    import torch.distributed as dist
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType

    with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=True,
                                                                                       rank0_only=True)):
        sd = model.state_dict()
    return sd if dist.get_rank() == 0 else None


def runner_type(cfg: Config, launcher: str) -> str:
    """``Runner`` or ``FlexibleRunner`` for ``cfg``, after checking (and completing) its strategy: a config whose
    strategy would be ignored, or that needs a package which is not installed, is refused with the fix. DDP over
    gloo (no CUDA) gets no CUDA device ids, for either runner."""
    kind = cfg.get("runner_type") or "Runner"
    strategy = cfg.get("strategy")
    if kind not in RUNNER_TYPES:
        raise ValueError(f"runner_type={kind!r} is not supported: use 'Runner' (DDP) or 'FlexibleRunner' (with "
                         f"strategy=dict(type='FSDPStrategy' | 'DDPStrategy' | ...))")
    cpu_ddp = launcher != "none" and not torch.cuda.is_available()  # mmengine's device_ids default: a CUDA index
    if kind == "Runner":
        if strategy:
            raise ValueError(f"the config sets strategy={dict(strategy)} but runner_type is 'Runner', which ignores "
                             f"it and trains plain DDP: add runner_type='FlexibleRunner' (or drop strategy)")
        if cpu_ddp:
            cfg.model_wrapper_cfg = dict(cfg.get("model_wrapper_cfg") or {}, device_ids=None)
            cfg.model_wrapper_cfg.setdefault("type", "MMDistributedDataParallel")
        return kind
    stype = (strategy or {}).get("type")
    if stype in STRATEGY_PACKAGES and importlib.util.find_spec(STRATEGY_PACKAGES[stype]) is None:
        pkg = STRATEGY_PACKAGES[stype]
        raise ImportError(f"strategy {stype} needs the {pkg} package, which is not installed: `pip install {pkg}` "
                          f"(it builds CUDA kernels against your torch), or use strategy=dict(type='FSDPStrategy')")
    if stype == "FSDPStrategy":
        _complete_fsdp(cfg, strategy, launcher)
        strategy.type = "ResumableFSDPStrategy"  # mmengine's, with optimizer state that resumes on torch >= 2.1
    elif stype in (None, "DDPStrategy") and cpu_ddp:
        if not strategy:
            cfg.strategy = dict(type="DDPStrategy")  # FlexibleRunner's default when distributed
            strategy = cfg.strategy
        _model_wrapper(strategy)["device_ids"] = None
    return kind


def _model_wrapper(strategy):
    """``strategy.model_wrapper``, created when missing (the stored object: a config dict converts what is set)."""
    if not strategy.get("model_wrapper"):
        strategy["model_wrapper"] = {}
    return strategy["model_wrapper"]


def _complete_fsdp(cfg: Config, strategy, launcher: str) -> None:
    if launcher == "none":
        raise ValueError("FSDPStrategy shards the model across processes: start with tools/dist_train.sh CONFIG "
                         "NGPUS (torchrun, --launcher pytorch) or tools/slurm_train.sh, even for one GPU")
    wrapper = _model_wrapper(strategy)
    if wrapper.get("use_orig_params") is False:
        raise ValueError("FSDP model_wrapper use_orig_params=False flattens parameters, so the optimizer cannot "
                         "group them by layer (layer-wise lr decay, weight-decay exemptions): set "
                         "use_orig_params=True")
    wrapper["use_orig_params"] = True
    if not torch.cuda.is_available():
        # mmengine passes device_id=int(LOCAL_RANK), a CUDA index; torch's FSDP runs on CPU (gloo) when told so
        wrapper["device_id"] = "cpu"
        if wrapper.pop("sync_module_states", False):
            # torch's FSDP broadcasts module states on GPUs only; on CPU every rank shards its own initialisation
            print_log("FSDP on CPU: sync_module_states is not supported there and was dropped", logger="current")
        if strategy.get("state_dict_cfg") == "full":
            # offload_to_cpu (mmengine's 'full') of tensors already on the CPU aliases torch's gather buffers: the
            # optimizer state round-trips with exp_avg overwritten by exp_avg_sq (torch 2.14, gloo), so a resumed
            # run diverges; without offloading it is exact
            strategy.state_dict_cfg = dict(
                state_dict_type="FULL_STATE_DICT",
                state_dict_config=dict(type="FullStateDictConfig", offload_to_cpu=False, rank0_only=True),
                optim_state_dict_config=dict(type="FullOptimStateDictConfig", offload_to_cpu=False, rank0_only=True))
