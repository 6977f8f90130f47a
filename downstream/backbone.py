"""``MAEViT``: the one :class:`~mae_backbone.models.VisionTransformer` as an mmdet / mmseg backbone.

A thin adapter: translates config arguments, loads ``init_cfg=dict(type='Pretrained', checkpoint=...)``
through :func:`mae_backbone.checkpoint.load_checkpoint` (official MAE ``.pth``, timm, mmpretrain,
HF ViTMAE or our own runs load directly, strictly, with a logged report), and returns maps:

* ``pyramid=None``: the outputs of ``out_indices`` as stride-p maps ``(B, D, H/p, W/p)``
  (ViTDet feeds the last one to :class:`SimpleFeaturePyramid`; mmseg's ``Feature2Pyramid``
  also takes these);
* ``pyramid=dict(rescales=(4, 2, 1, 0.5), norm='BN')``: the MAE paper's adaptation, maps at
  strides p/4 .. 2p with ``D`` channels each, ready for mmdet's ``FPN``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log
from torch import nn

from mae_backbone.checkpoint import LoadReport, load_checkpoint
from mae_backbone.models import ARCHS, list_models, resolve_arch
from mae_backbone.models.pyramid import RescalePyramid
from mae_backbone.models.vit import PatchEmbed, VisionTransformer


def _arch_shape(arch: Union[str, Dict]) -> Dict:
    if isinstance(arch, dict):
        missing = {"embed_dim", "depth", "num_heads"} - set(arch)
        if missing:
            raise ValueError(f"a custom arch dict needs embed_dim, depth and num_heads (missing {sorted(missing)})")
        return dict(arch)
    try:
        a = resolve_arch(arch)
    except ValueError:
        raise ValueError(f"unknown arch {arch!r}; use one of {sorted(n.split('_')[0] for n in ARCHS)} / "
                         f"{[n for n in list_models() if not n.startswith('mae_')]} or "
                         f"dict(embed_dim=, depth=, num_heads=)") from None
    return dict(patch_size=a.patch_size, embed_dim=a.embed_dim, depth=a.depth, num_heads=a.num_heads)


# mmseg / mmpretrain backbone argument names -> ours, so a stock config (e.g. mmseg's
# mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py) runs with only ``type`` switched to MAEViT
MM_ALIASES = {"embed_dims": "embed_dim", "num_layers": "depth", "in_channels": "in_chans",
              "init_values": "layer_scale_init"}


def _pair(size, name: str):
    """mmseg's size convention: an int, a 1-tuple (square) or a 2-tuple."""
    if isinstance(size, (tuple, list)):
        if len(size) == 1:
            return (int(size[0]), int(size[0]))
        if len(size) != 2:
            raise ValueError(f"{name} must be an int, a 1-tuple or a 2-tuple (h, w), got {size}")
        return tuple(int(v) for v in size)
    return size


def translate_mm_kwargs(kwargs: Dict) -> Dict:
    """Map mmseg / mmpretrain ViT arguments onto ours; refuse the ones whose meaning we do not implement."""
    kwargs = dict(kwargs)
    if "autocast_dtype" in kwargs:
        raise ValueError("MAEViT no longer takes autocast_dtype: set the config's top-level "
                         "autocast_modules = dict(backbone='bfloat16') (neck='bfloat16' for the ViTDet neck)")
    for old, new in MM_ALIASES.items():
        if old in kwargs:
            if new in kwargs:
                raise ValueError(f"pass either {old} (mmseg name) or {new}, not both")
            kwargs[new] = kwargs.pop(old)
    norm = kwargs.pop("norm_cfg", None)
    if norm is not None and (norm.get("type") != "LN" or norm.get("eps", 1e-5) != 1e-6):
        raise ValueError(f"MAEViT's blocks use LayerNorm(eps=1e-6) as the MAE checkpoints; got norm_cfg={norm}")
    act = kwargs.pop("act_cfg", None)
    if act is not None and act.get("type") != "GELU":
        raise ValueError(f"MAEViT's MLPs use GELU as the MAE checkpoints; got act_cfg={act}")
    for name in ("attn_drop_rate", "drop_rate"):
        if kwargs.pop(name, 0.0):
            raise ValueError(f"{name} > 0 is not supported by MAEViT (MAE fine-tuning uses drop_path_rate only)")
    num_fcs = kwargs.pop("num_fcs", 2)
    if num_fcs != 2:
        raise ValueError(f"num_fcs={num_fcs}: MAEViT's MLPs have two linear layers, as the MAE checkpoints")
    if "qv_bias" in kwargs:
        # BEiT's q and v biases (no k bias) compute what a full qkv bias does: a key bias adds the same q . b_k to
        # every logit of a query, which softmax removes; MAE checkpoints carry the full qkv bias
        qv_bias = kwargs.pop("qv_bias")
        if "qkv_bias" in kwargs:
            raise ValueError("pass either qv_bias (mmseg name) or qkv_bias, not both")
        kwargs["qkv_bias"] = bool(qv_bias)
    return kwargs


def _rel_pos_arg(rel_pos: Optional[str], kwargs: Dict) -> Optional[str]:
    """``rel_pos`` from ours or the OpenMMLab switches (popped from ``kwargs``): mmdet ViTDet's ``use_rel_pos`` ->
    ``'decomposed'``, mmpretrain BEiT's ``use_rel_pos_bias`` -> ``'bias'``; ``'auto'``: mmseg's MAE / BEiT argument
    set (``init_values``) always has BEiT's bias, so a stock config switched to MAEViT builds the same model."""
    switches = {name: kwargs.pop(name) for name in ("use_rel_pos", "use_rel_pos_bias") if name in kwargs}
    if switches and rel_pos != "auto":
        raise ValueError(f"pass either rel_pos or the OpenMMLab switch {sorted(switches)}, not both")
    decomposed, bias = switches.get("use_rel_pos"), switches.get("use_rel_pos_bias")
    if decomposed and bias:
        raise ValueError("use_rel_pos and use_rel_pos_bias both set: one kind of relative position per model "
                         "(rel_pos='decomposed' for ViTDet, rel_pos='bias' for BEiT / the MAE paper's ADE20K)")
    if decomposed:
        return "decomposed"
    if bias is not None:
        return "bias" if bias else None
    if rel_pos == "auto":
        return "bias" if "init_values" in kwargs else None
    return rel_pos


class _NormedPatchEmbed(PatchEmbed):
    """Patch embedding followed by LayerNorm (mmseg's ``patch_norm=True``)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__(patch_size, in_chans, embed_dim)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


class MAEViT(VisionTransformer):
    """MAE ViT backbone for mmdet / mmseg (registered in both under ``MAEViT``).

    Args:
        arch: ``tiny/small/base/large/huge`` (official MAE shapes) or ``dict(embed_dim, depth,
            num_heads[, patch_size, mlp_ratio])``.
        img_size: the pretraining image size (the stored position table's grid, 224 -> 14 x 14);
            inputs of any size that is a multiple of the patch size work, the table is
            interpolated (learned) or rebuilt (fixed sin-cos) for their grid.
        out_indices: blocks whose outputs are returned (negative counts from the end).
        pyramid: ``None`` or ``dict(rescales=..., norm=...)`` for the MAE-paper rescaling.
        final_norm: apply the encoder's last LayerNorm to every output (off in the MAE paper's
            and ViTDet's transfer; the checkpoint's ``norm.*`` is then reported unused).
        frozen_blocks: freeze patch embedding, position table and the first k blocks.
        learnable_pos_embed: fine-tune the absolute position table (default True for transfer).
        use_cls_token: default: kept for global attention without relative positions, dropped
            (ViTDet) otherwise.
        rel_pos: ``None``, ``'decomposed'`` (ViTDet) or ``'bias'`` (BEiT's relative position bias, the MAE paper's
            ADE20K setting), zero-initialised; ``'auto'`` (default): ``'bias'`` when mmseg's MAE / BEiT arguments
            (``init_values``) are given, since mmseg's ``MAE`` backbone always has it, else none. mmdet ViTDet's
            ``use_rel_pos=True`` and mmpretrain BEiT's ``use_rel_pos_bias=True`` are accepted with their meaning.
        window_size, global_block_indexes, rel_pos_img_size, drop_path_rate,
        grad_checkpointing, patch_size, mlp_ratio, qkv_bias: see :class:`VisionTransformer`.
        norm_eval: keep the BatchNorm layers (those of the rescaling pyramid) in eval mode while training, so
            their running statistics stay frozen: mmdet / mmseg's meaning. mmseg's BEiT / MAE backbones accept
            it too but have no BatchNorm (they put their LayerNorms in eval mode, which changes nothing).
        patch_norm: a LayerNorm (eps 1e-6) after the patch embedding, as mmseg's ``patch_norm=True``; new
            parameters (the MAE checkpoints have none), reported as missing at load.
        pretrained: a checkpoint path, the same as ``init_cfg=dict(type='Pretrained', checkpoint=...)``
            (mmseg's ``EncoderDecoder(pretrained=...)`` passes it). mmseg / mmpretrain argument names
            (``embed_dims``, ``num_layers``, ``in_channels``, ``init_values``, ``qv_bias``, ``num_fcs=2``, LN /
            GELU cfgs, 1-tuple sizes, an int ``out_indices``) are accepted with mmseg's meaning; refused, naming why:
            a norm other than LayerNorm(eps=1e-6), an activation other than GELU, ``num_fcs`` other than 2,
            attention / projection dropout (each would change the pretrained function the checkpoint holds).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)``; new parameters (relative
            position tables, pyramid) may be missing, the MAE decoder / mask token, the unused
            cls token and final norm, and a classification head may be unused; anything else fails.
    """

    def __init__(self, arch: Union[str, Dict] = "base", img_size: Union[int, Tuple[int, int]] = 224,
                 out_indices: Sequence[int] = (3, 5, 7, 11), pyramid: Optional[Dict] = None,
                 final_norm: bool = False, frozen_blocks: int = 0, learnable_pos_embed: bool = True,
                 use_cls_token: Optional[bool] = None, window_size: int = 0,
                 global_block_indexes: Sequence[int] = (), rel_pos: Optional[str] = "auto",
                 rel_pos_img_size: Optional[Union[int, Tuple[int, int]]] = None, drop_path_rate: float = 0.0,
                 grad_checkpointing: bool = False,
                 norm_eval: bool = False, patch_norm: bool = False,
                 init_cfg: Optional[Dict] = None, pretrained: Optional[str] = None, **kwargs):
        img_size = _pair(img_size, "img_size")
        rel_pos_img_size = _pair(rel_pos_img_size, "rel_pos_img_size")
        if isinstance(out_indices, int):  # mmseg's out_indices=-1
            out_indices = (out_indices,)
        rel_pos = _rel_pos_arg(rel_pos, kwargs)
        shape = {**_arch_shape(arch), **translate_mm_kwargs(kwargs)}
        if pretrained:  # mmseg's EncoderDecoder(pretrained=...) hands it to the backbone
            if init_cfg:
                raise ValueError("set either pretrained= or init_cfg=dict(type='Pretrained', ...), not both")
            init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        if use_cls_token is None:
            use_cls_token = not (window_size or rel_pos == "decomposed")
        super().__init__(img_size=img_size, drop_path_rate=drop_path_rate, learnable_pos_embed=learnable_pos_embed,
                         grad_checkpointing=grad_checkpointing, use_cls_token=use_cls_token,
                         window_size=window_size, global_block_indexes=global_block_indexes,
                         rel_pos=rel_pos, rel_pos_img_size=rel_pos_img_size, **shape)
        try:
            self.out_indices = tuple(self.resolve_indices(list(out_indices)))
        except ValueError as e:
            raise ValueError(f"bad out_indices {tuple(out_indices)}: {e}") from None
        if not self.out_indices:
            raise ValueError("out_indices is empty: name at least one block")
        self.final_norm = final_norm
        if not final_norm:
            self.norm = nn.Identity()
        self.pyramid = None
        if pyramid is not None:
            pyramid = dict(pyramid)
            self.pyramid = RescalePyramid(self.embed_dim, **pyramid)
            if len(self.pyramid.rescales) != len(self.out_indices):
                raise ValueError(f"pyramid rescales {self.pyramid.rescales} and out_indices {self.out_indices} "
                                 f"must have the same length (one rescale per returned block)")
        self.init_cfg = dict(init_cfg) if init_cfg else None
        if self.init_cfg and self.init_cfg.get("type") != "Pretrained":
            raise ValueError(f"MAEViT init_cfg supports type='Pretrained' only, got {self.init_cfg}")
        self.patch_norm = bool(patch_norm)
        if self.patch_norm:
            normed = _NormedPatchEmbed(self.patch_size, self.patch_embed.in_chans, self.embed_dim)
            normed.proj = self.patch_embed.proj
            self.patch_embed = normed
        self.norm_eval = bool(norm_eval)
        self.is_init = False
        self.load_report: Optional[LoadReport] = None
        self.frozen_blocks = frozen_blocks
        self.freeze(frozen_blocks)

    def train(self, mode: bool = True):
        """As the encoder (frozen parts stay in eval mode); with ``norm_eval`` the BatchNorm layers stay in eval."""
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # ----------------------------------------------------------------- weights
    def expected_new_keys(self) -> List[str]:
        """The encoder's (relative tables, layer scales), plus the pyramid, a final norm and a patch norm."""
        keys = super().expected_new_keys()
        if self.pyramid is not None:
            keys.append(r"^pyramid\.")
        if self.final_norm:
            keys.append(r"^norm\.")  # a full MAE checkpoint has it; an encoder for pyramid heads may not
        if self.patch_norm:
            keys.append(r"^patch_embed\.norm\.")
        return keys

    def expected_unused_keys(self) -> List[str]:
        """The encoder's (decoder, mask token, cls token of a patch-only model), plus a classifier's head and the
        final norm when ``final_norm`` is off."""
        return super().expected_unused_keys() + [r"^(head|fc_norm)\."] + ([] if self.final_norm else [r"^norm\."])

    def init_weights(self) -> None:
        """Load ``init_cfg``'s checkpoint strictly (see class docstring); a no-op without one."""
        if self.is_init or not self.init_cfg:
            return
        path = self.init_cfg.get("checkpoint")
        if not path:
            raise ValueError("init_cfg=dict(type='Pretrained') needs checkpoint=PATH")
        self.load_report = load_checkpoint(self, path, strict=True, source=self.init_cfg.get("source", "auto"))
        print_log(f"MAEViT: loaded {path}\n{self.load_report}", logger="current")
        self.freeze(self.frozen_blocks)
        self.is_init = True

    # ----------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Images (B, C, H, W), H and W multiples of the patch size -> tuple of maps (see class docstring)."""
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"MAEViT got a {h}x{w} batch, not a multiple of the patch size {self.patch_size}: "
                             f"pad in the data preprocessor (pad_size_divisor = a multiple of {self.patch_size}, "
                             f"e.g. {self.patch_size * 2}) or resize the images")
        maps = self.forward_intermediates(x, list(self.out_indices), norm=self.final_norm)
        return tuple(self.pyramid(maps) if self.pyramid is not None else maps)

    def layer_id(self, name: str) -> int:
        """Blocks as the encoder; the pyramid sits with the heads (top layer)."""
        return self.depth + 1 if name.startswith("pyramid.") else super().layer_id(name)
