"""Checkpoint interop: official MAE, timm, mmpretrain, HF ViTMAE and our own layouts.

Converters are pure functions ``convert_<source>(state_dict) -> state_dict`` into the
native (official MAE / timm) key layout. :func:`load_checkpoint` detects the source,
converts, resizes position tables to the model's grid, loads strictly by default and
returns a :class:`LoadReport`. Files are read with ``torch.load(weights_only=True)``;
writes are atomic (temp file + rename).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import re
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .files import atomic_write
from .models.pos_embed import adapt_pos_embed

logger = logging.getLogger(__name__)
StateDict = Dict[str, torch.Tensor]
SOURCES = ("auto", "native", "official", "timm", "mmpretrain", "hf")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


@dataclasses.dataclass
class LoadReport:
    """What a load did: source layout, renamed, resized, missing and unexpected keys."""
    source: str
    converted: List[str] = dataclasses.field(default_factory=list)
    resized: List[str] = dataclasses.field(default_factory=list)
    missing: List[str] = dataclasses.field(default_factory=list)
    unexpected: List[str] = dataclasses.field(default_factory=list)
    loaded: int = 0

    def __str__(self) -> str:
        def fmt(keys: Sequence[str]) -> str:
            return f"{len(keys)}" + (f" ({', '.join(_abbrev(keys))})" if keys else "")
        return (f"checkpoint [{self.source}]: loaded {self.loaded} tensors | converted {fmt(self.converted)}"
                f" | resized {fmt(self.resized)} | missing {fmt(self.missing)}"
                f" | unexpected {fmt(self.unexpected)}")


def _abbrev(keys: Sequence[str], limit: int = 8) -> List[str]:
    keys = sorted(keys)
    return keys if len(keys) <= limit else keys[:limit] + [f"... {len(keys) - limit} more"]


# --------------------------------------------------------------------------- reading
# Hooks the layers above install (this module imports nothing above it): ``mae_backbone.weights`` turns names and
# URLs into local files; ``mae_backbone.engine`` allow-lists what mmengine pickles into its training checkpoints.
_SOURCE_RESOLVER: Optional[Callable[[Union[str, os.PathLike]], Path]] = None
_ALLOWLIST_PROVIDERS: List[Callable[[], bool]] = []


def register_source_resolver(resolver: Callable[[Union[str, os.PathLike]], Path]) -> None:
    """``resolver(src) -> local path`` for every checkpoint source (names, URLs, paths)."""
    global _SOURCE_RESOLVER
    _SOURCE_RESOLVER = resolver


def register_allowlist_provider(provider: Callable[[], bool]) -> None:
    """``provider()`` registers more weights-only safe globals when a file is refused; True if it added any
    (the read is then tried again)."""
    _ALLOWLIST_PROVIDERS.append(provider)


def read_checkpoint(path: Union[str, os.PathLike]) -> dict:
    """Read a ``.pth``/``.pt``/``.bin`` (``weights_only=True``) or ``.safetensors`` file: a path, an official name
    (``mae_pretrain_vit_base``) or an ``http(s)://`` / ``file://`` URL (downloaded once and verified, by the
    resolver :mod:`mae_backbone.weights` registers)."""
    path = _SOURCE_RESOLVER(path) if _SOURCE_RESOLVER is not None else Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "mmengine." in str(e) and any([provider() for provider in _ALLOWLIST_PROVIDERS]):
            return read_checkpoint(path)  # an mmengine training checkpoint: retry with its allow-list
        detail = next((ln.strip() for ln in str(e).splitlines()
                       if any(w in ln for w in ("GLOBAL", "reduce", "refused getattr"))), str(e).splitlines()[0])
        raise CheckpointError(
            f"refused to unpickle {path}: it holds objects outside the weights-only allow-list "
            f"({detail}). If the file is trusted and comes from a training framework, "
            f"allow-list its classes with torch.serialization.add_safe_globals; never load untrusted "
            f"files with weights_only=False.") from e


def unwrap(ckpt: Mapping) -> Tuple[StateDict, Optional[str]]:
    """Find the tensor dict inside a checkpoint container (and drop a DDP ``module.`` prefix); also
    return the wrapper key."""
    def strip_ddp(sd: Mapping) -> StateDict:
        if all(k.startswith("module.") for k in sd):
            return {k[len("module."):]: v for k, v in sd.items()}
        return dict(sd)

    for key in ("model", "state_dict", "module", "model_state"):
        inner = ckpt.get(key) if isinstance(ckpt, Mapping) else None
        if isinstance(inner, Mapping) and inner and all(torch.is_tensor(v) for v in inner.values()):
            return strip_ddp(inner), key
    if isinstance(ckpt, Mapping) and ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        return strip_ddp(ckpt), None
    raise CheckpointError("no state dict found: expected a dict of tensors, or one under "
                          "'model', 'state_dict' or 'module'")


def detect_source(sd: Mapping[str, torch.Tensor], wrapper: Optional[str] = None) -> str:
    """Guess the layout of a state dict from its keys."""
    keys = list(sd)
    if any(re.match(r"^backbone\.(layers\.\d+\.|patch_embed\.projection\.)|^neck\.decoder_", k) for k in keys):
        return "mmpretrain"
    if any(re.match(r"^(vit\.)?(embeddings\.|encoder\.layer\.\d+\.|layers\.\d+\.attention\.)|^decoder\.decoder_", k)
           for k in keys):
        return "hf"
    if wrapper == "model" and any(k.startswith("blocks.") for k in keys):
        return "official"
    if any(k.startswith("model.") for k in keys):
        return "native"  # saved by our mmengine wrapper
    return "timm" if any(k.startswith("blocks.") for k in keys) else "native"


# ------------------------------------------------------------------------ converters
def convert_native(sd: StateDict) -> StateDict:
    """Our files; mmengine runs of our wrapper prefix keys with ``model.``."""
    return {k[len("model."):] if k.startswith("model.") else k: v for k, v in sd.items()}


def convert_official(sd: StateDict) -> StateDict:
    """Official MAE (``{'model': ...}``, already unwrapped): identical key layout."""
    return dict(sd)


def convert_timm(sd: StateDict) -> StateDict:
    """timm ``VisionTransformer``: identical key layout for the encoder (and ``head``/``fc_norm``)."""
    return dict(sd)


_MMPRETRAIN_RULES = [
    (r"^backbone\.patch_embed\.projection\.", "patch_embed.proj."),
    (r"^backbone\.layers\.(\d+)\.", r"blocks.\1."),
    (r"^backbone\.ln1\.", "norm."),
    (r"^backbone\.(cls_token|pos_embed|mask_token)$", r"\1"),
    (r"^neck\.decoder_blocks\.(\d+)\.", r"decoder_blocks.\1."),
    (r"^neck\.ln1\.", "decoder_norm."),
    (r"^neck\.(decoder_norm|decoder_embed|decoder_pred)\.", r"\1."),
    (r"^neck\.(mask_token|decoder_pos_embed)$", r"\1"),
]
_MM_BLOCK_RULES = [(r"\.ln1\.", ".norm1."), (r"\.ln2\.", ".norm2."),
                   (r"\.ffn\.layers\.0\.0\.", ".mlp.fc1."), (r"\.ffn\.layers\.1\.", ".mlp.fc2.")]


def convert_mmpretrain(sd: StateDict) -> StateDict:
    """mmpretrain MAE (``backbone.layers.N.ln1``, ``ffn.layers.0.0``, ``neck.decoder_blocks``)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("data_preprocessor."):
            continue
        new = k
        for pat, rep in _MMPRETRAIN_RULES:
            new = re.sub(pat, rep, new)
        if new.startswith(("blocks.", "decoder_blocks.")):
            for pat, rep in _MM_BLOCK_RULES:
                new = re.sub(pat, rep, new)
        out[new] = v
    return out


# per-block renames; transformers 4.x names (the files on the hub) and 5.x names
_HF_BLOCK = {
    "layernorm_before": "norm1", "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj", "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
    "attention.o_proj": "attn.proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
}
_HF_QKV = {"attention.attention.query": "q", "attention.attention.key": "k", "attention.attention.value": "v",
           "attention.q_proj": "q", "attention.k_proj": "k", "attention.v_proj": "v"}
_HF_TOP = {"embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
           "decoder.mask_token": "mask_token", "decoder.decoder_pos_embed": "decoder_pos_embed"}
_HF_BLOCK_RE = re.compile(r"^(?:encoder\.layer|layers|decoder\.decoder_layers)\.(\d+)\.(.+)\.(weight|bias)$")


def convert_hf(sd: StateDict) -> StateDict:
    """HF ``ViTMAEForPreTraining`` / ``ViTMAEModel`` (transformers 4.x or 5.x names): rename, fuse q/k/v."""
    out: StateDict = {}
    qkv: Dict[Tuple[str, str], Dict[str, torch.Tensor]] = {}
    for key, v in sd.items():
        k = key[len("vit."):] if key.startswith("vit.") else key
        m = _HF_BLOCK_RE.match(k)
        if m:
            block = ("decoder_blocks." if k.startswith("decoder.") else "blocks.") + m.group(1)
            if m.group(2) in _HF_QKV:
                qkv.setdefault((block, m.group(3)), {})[_HF_QKV[m.group(2)]] = v
                continue
            if m.group(2) not in _HF_BLOCK:
                raise CheckpointError(f"unknown HF ViTMAE block tensor {key!r}")
            out[f"{block}.{_HF_BLOCK[m.group(2)]}.{m.group(3)}"] = v
            continue
        k = _HF_TOP.get(k, k)
        k = re.sub(r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj.", k)
        k = re.sub(r"^layernorm\.", "norm.", k)
        k = re.sub(r"^decoder\.(decoder_embed|decoder_norm|decoder_pred)\.", r"\1.", k)
        out[k] = v
    for (block, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"{block}: incomplete query/key/value {kind} tensors in the HF checkpoint")
        out[f"{block}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    return out


CONVERTERS: Dict[str, Callable[[StateDict], StateDict]] = {
    "native": convert_native, "official": convert_official, "timm": convert_timm,
    "mmpretrain": convert_mmpretrain, "hf": convert_hf,
}


def convert_state_dict(ckpt: Mapping, source: str = "auto") -> Tuple[StateDict, str]:
    """Unwrap and convert any supported checkpoint into native keys; returns (state_dict, source)."""
    if source not in SOURCES:
        raise ValueError(f"unknown checkpoint source {source!r}; choose one of {SOURCES}")
    sd, wrapper = unwrap(ckpt)
    if source == "auto":
        source = detect_source(sd, wrapper)
    return CONVERTERS[source](sd), source


# --------------------------------------------------------------------------- loading
def _grid_of(model: nn.Module, key: str) -> Optional[Tuple[int, int]]:
    grid = getattr(model, "grid", None)
    return tuple(grid) if grid is not None and key in ("pos_embed", "decoder_pos_embed") else None


def adapt_pos_embeds(sd: StateDict, model: nn.Module, target: Optional[StateDict] = None) -> List[str]:
    """Resize position tables in ``sd`` to the model's grid (in place); returns resized keys.

    :func:`~mae_backbone.models.pos_embed.adapt_pos_embed`'s rule, the one the model applies at run time: a fixed
    sin-cos table is rebuilt exactly, a learned one interpolated bicubically (official ``interpolate_pos_embed``).
    """
    resized = []
    target = model.state_dict() if target is None else target
    for key in ("pos_embed", "decoder_pos_embed"):
        if key not in sd or key not in target or sd[key].shape == target[key].shape:
            continue
        src, dst = sd[key], target[key]
        if src.ndim != 3 or src.shape[-1] != dst.shape[-1]:
            raise CheckpointError(f"{key}: checkpoint shape {tuple(src.shape)} cannot be resized to "
                                  f"{tuple(dst.shape)} (different embedding width: another model size?)")
        grid = _grid_of(model, key)
        try:
            sd[key] = adapt_pos_embed(src, grid)
        except ValueError:
            raise CheckpointError(
                f"{key}: {src.shape[1] - 1} position tokens (after one cls row) do not form a square grid, so the "
                f"source grid is unknown; resize the table first with mae_backbone.models.resize_pos_embed("
                f"table, new_grid={grid}, old_grid=(h, w)), or build the model at the checkpoint's size") from None
        resized.append(f"{key} {tuple(src.shape)}->{tuple(sd[key].shape)}")
    return resized


def check_shapes(sd: StateDict, model: nn.Module, target: Optional[StateDict] = None) -> None:
    """Raise a readable error for tensors whose shapes cannot match (e.g. another patch size)."""
    target = model.state_dict() if target is None else target
    bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
           for k, v in sd.items() if k in target and target[k].shape != v.shape]
    if bad:
        hint = ""
        if any(k.startswith("patch_embed.proj.weight") for k in bad):
            hint = " (the checkpoint uses another patch size or channel count: build the model to match)"
        raise CheckpointError("shape mismatch" + hint + ":\n  " + "\n  ".join(bad))


def _contract(model: nn.Module, method: str) -> Tuple[str, ...]:
    """A model's declared checkpoint contract (regexes); none for a model that declares none."""
    declared = getattr(model, method, None)
    return tuple(declared()) if callable(declared) else ()


def load_checkpoint(model: nn.Module, src: Union[str, os.PathLike, Mapping], strict: bool = True,
                    source: str = "auto", allowed_missing: Optional[Sequence[str]] = None,
                    allowed_unexpected: Optional[Sequence[str]] = None) -> LoadReport:
    """Load a checkpoint (path or dict) of any supported layout into ``model``.

    Args:
        strict: raise if any model key is missing (beyond ``allowed_missing`` patterns)
            or any checkpoint key is unexpected.
        source: ``auto`` or one of ``native, official, timm, mmpretrain, hf``.
        allowed_missing: regexes of keys that may be absent (new parameters); default: the model's own contract,
            ``model.expected_new_keys()`` (e.g. relative position tables, a classifier's head), else none.
        allowed_unexpected: regexes of checkpoint keys that may go unused (e.g. the MAE decoder when fine-tuning);
            default ``model.expected_unused_keys()``, else none. They are still listed in the report.
            Pass ``()`` to either for an exact match.
    """
    if allowed_missing is None:
        allowed_missing = _contract(model, "expected_new_keys")
    if allowed_unexpected is None:
        allowed_unexpected = _contract(model, "expected_unused_keys")
    ckpt = read_checkpoint(src) if isinstance(src, (str, os.PathLike)) else src
    raw, _ = unwrap(ckpt)
    sd, source = convert_state_dict(ckpt, source)
    report = LoadReport(source=source, converted=sorted(set(sd) - set(raw)))
    target = model.state_dict()
    report.resized = adapt_pos_embeds(sd, model, target)
    check_shapes(sd, model, target)
    model_keys = set(target)
    report.missing = sorted(model_keys - set(sd))
    report.unexpected = sorted(set(sd) - model_keys)
    undeclared = [k for k in report.missing if not any(re.search(p, k) for p in allowed_missing)]
    surprising = [k for k in report.unexpected if not any(re.search(p, k) for p in allowed_unexpected)]
    check = getattr(model, "check_checkpoint_keys", None)  # a model's own rule beyond its key lists
    if strict and callable(check):
        try:
            check(report.missing)
        except ValueError as e:
            raise CheckpointError(f"strict load failed: {e}") from None
    if strict and (undeclared or surprising):
        raise CheckpointError(
            f"strict load failed: {len(undeclared)} missing keys {_abbrev(undeclared)}, "
            f"{len(surprising)} unexpected keys {_abbrev(surprising)}. "
            f"Pass strict=False to load the rest (every skipped key is reported), or declare "
            f"new parameters with allowed_missing / unused ones with allowed_unexpected.")
    report.loaded = len(model_keys & set(sd))
    if report.loaded == 0:
        raise CheckpointError(f"no tensor of the checkpoint ({len(sd)} keys, e.g. {_abbrev(report.unexpected, 3)}) "
                              f"matches the model ({_abbrev(report.missing, 3)}): wrong model, or pass "
                              f"source= (one of {SOURCES[1:]}) if the layout was misdetected as {source!r}")
    model.load_state_dict({k: v for k, v in sd.items() if k in model_keys}, strict=False)
    logger.info("%s", report)
    return report


# --------------------------------------------------------------------------- writing
def save_checkpoint(obj: Mapping, path: Union[str, os.PathLike]) -> Path:
    """Atomically write ``obj`` with ``torch.save`` (:func:`mae_backbone.files.atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(dict(obj), f))


ENCODER_PREFIXES = ("cls_token", "pos_embed", "patch_embed.", "blocks.", "norm.")


def encoder_state_dict(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Keep only encoder tensors (drop the decoder, mask token and heads): official export layout."""
    return {k: v for k, v in sd.items() if k.startswith(ENCODER_PREFIXES) or k in ENCODER_PREFIXES}
