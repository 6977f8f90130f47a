"""mmseg's layer-decay optimizer constructors beside ours: ``import downstream`` leaves mmseg's names to mmseg's
classes, registers the MAEViT-aware ones under their own names, and the runner build refuses mmseg's rule on an
MAEViT backbone; registrations never override another package's class."""
import copy
import os.path as osp
import subprocess
import sys

import pytest
from torch import nn

pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import Registry, init_default_scope  # noqa: E402
from mmseg.engine.optimizers import layer_decay_optimizer_constructor as mmseg_lrd  # noqa: E402
from mmseg.registry import MODELS as SEG_MODELS  # noqa: E402
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS  # noqa: E402

import downstream  # noqa: E402
from downstream import mmseg_optim  # noqa: E402
from mae_backbone.engine.launch import build_runner, check_layer_decay_constructor  # noqa: E402

ROOT = osp.join(osp.dirname(__file__), "..")
STOCK_SWAP = osp.join(ROOT, "configs", "upernet", "upernet_mae-vit-b_stock-mmseg-mae_8xb2-amp-160k_ade20k-512x512.py")
DEPTH, RATE = 4, 0.5
OURS = ("MAEViTLayerDecayOptimizerConstructor", "MAEViTLearningRateDecayOptimizerConstructor")
MMSEGS = ("LayerDecayOptimizerConstructor", "LearningRateDecayOptimizerConstructor")


def _stock_mmseg_cfg():
    import mmseg
    return Config.fromfile(osp.join(osp.dirname(mmseg.__file__), ".mim", "configs", "mae",
                                    "mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py"))


def _optim(constructor):
    """mmseg's two paramwise_cfg spellings: BEiT's (layer_decay_rate) and the newer one (decay_rate)."""
    paramwise = (dict(num_layers=DEPTH, layer_decay_rate=RATE) if constructor.endswith(MMSEGS[0])
                 else dict(num_layers=DEPTH, decay_rate=RATE, decay_type="layer_wise"))
    return Config(dict(optim_wrapper=dict(type="OptimWrapper", constructor=constructor, paramwise_cfg=paramwise,
                                          optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.05)))).optim_wrapper


class Segmentor(nn.Module):
    """What mmseg's constructors look at: ``module.backbone`` and the named parameters."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.decode_head = nn.Linear(8, 2)


def _mae_vit():
    return Segmentor(downstream.MAEViT(arch=dict(embed_dim=32, depth=DEPTH, num_heads=2, patch_size=16), img_size=32,
                                       out_indices=(DEPTH - 1,)))


def _mmseg_mae():
    init_default_scope("mmseg")
    return Segmentor(SEG_MODELS.build(dict(type="MAE", img_size=(32, 32), patch_size=16, embed_dims=32,
                                           num_layers=DEPTH, num_heads=2, out_indices=[DEPTH - 1])))


def _lr_scales(model, constructor):
    init_default_scope("mmseg")
    wrapper = build_optim_wrapper(model, _optim(constructor))
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g["lr"] for g in wrapper.optimizer.param_groups for p in g["params"]}


def test_mmseg_names_keep_mmsegs_classes_and_ours_are_added():
    for name in MMSEGS:
        mmseg_cls = getattr(mmseg_lrd, name)
        assert mmseg_cls.__module__.startswith("mmseg.")
        assert OPTIM_WRAPPER_CONSTRUCTORS.get(name) is mmseg_cls
        assert OPTIM_WRAPPER_CONSTRUCTORS.module_dict[name] is mmseg_cls
    assert OPTIM_WRAPPER_CONSTRUCTORS.get(OURS[0]) is mmseg_optim.MAEViTLayerDecayOptimizerConstructor
    assert OPTIM_WRAPPER_CONSTRUCTORS.get(OURS[1]) is mmseg_optim.MAEViTLearningRateDecayOptimizerConstructor
    assert issubclass(mmseg_optim.MAEViTLayerDecayOptimizerConstructor, mmseg_lrd.LayerDecayOptimizerConstructor)


@pytest.mark.parametrize("ours, mmsegs", list(zip(OURS, MMSEGS)))
def test_our_names_give_mae_vit_its_layer_wise_decay(ours, mmsegs):
    model = _mae_vit()
    lr = _lr_scales(model, ours)
    for i in range(DEPTH):
        assert lr[f"backbone.blocks.{i}.attn.qkv.weight"] == pytest.approx(RATE ** (DEPTH - i))
    assert lr["backbone.patch_embed.proj.weight"] == pytest.approx(RATE ** (DEPTH + 1))
    assert lr["backbone.pos_embed"] == pytest.approx(RATE ** (DEPTH + 1))
    assert lr["decode_head.weight"] == pytest.approx(1.0)
    # what the guard prevents: mmseg's name-based rule on the same model leaves every block at lr scale 1
    stock = _lr_scales(model, mmsegs)
    assert all(stock[f"backbone.blocks.{i}.attn.qkv.weight"] == pytest.approx(1.0) for i in range(DEPTH))


@pytest.mark.parametrize("ours, mmsegs", list(zip(OURS, MMSEGS)))
def test_other_backbones_keep_mmsegs_rule(ours, mmsegs):
    model = _mmseg_mae()
    stock, mine = _lr_scales(model, mmsegs), _lr_scales(model, ours)
    assert stock == mine
    for i in range(DEPTH):  # mmseg's rule on its own MAE: layer i at rate ** (num_layers - i)
        assert stock[f"backbone.layers.{i}.attn.qkv.weight"] == pytest.approx(RATE ** (DEPTH - i))
    check_layer_decay_constructor(_stock_mmseg_cfg())  # mmseg's MAE + mmseg's constructor: not refused


@pytest.mark.parametrize("constructor, fix", [
    ("LayerDecayOptimizerConstructor", "MAEViTLayerDecayOptimizerConstructor"),
    ("mmseg.LayerDecayOptimizerConstructor", "MAEViTLayerDecayOptimizerConstructor"),
    ("LearningRateDecayOptimizerConstructor", "MAEViTLearningRateDecayOptimizerConstructor"),
    (mmseg_lrd.LayerDecayOptimizerConstructor, "MAEViTLayerDecayOptimizerConstructor"),
])
def test_mmsegs_constructor_on_mae_vit_is_refused_naming_the_fix(constructor, fix):
    cfg = _stock_mmseg_cfg()
    cfg.model.backbone.type = "MAEViT"  # the stock swap as it was: backbone switched, constructor not
    cfg.optim_wrapper.constructor = constructor
    with pytest.raises(ValueError, match=rf"constructor='{fix}'") as err:
        check_layer_decay_constructor(cfg)
    assert "backbone.layers.N" in str(err.value) and "backbone.blocks.N" in str(err.value)
    tta = Config(dict(model=dict(type="SegTTAModel", module=copy.deepcopy(cfg.model)), optim_wrapper=cfg.optim_wrapper))
    with pytest.raises(ValueError, match=fix):  # tools/test.py --tta wraps the model
        check_layer_decay_constructor(tta)


def test_build_runner_refuses_before_building_anything():
    cfg = Config.fromfile(STOCK_SWAP)
    cfg.optim_wrapper.constructor = "LayerDecayOptimizerConstructor"
    with pytest.raises(ValueError, match="constructor='MAEViTLayerDecayOptimizerConstructor'"):
        build_runner(cfg)


def test_our_configs_pass_the_check():
    check_layer_decay_constructor(Config.fromfile(STOCK_SWAP))
    for name in ("upernet_mae-vit-b_8xb2-160k_ade20k-512x512.py", "upernet_mae-vit-l_8xb2-160k_ade20k-512x512.py"):
        check_layer_decay_constructor(Config.fromfile(osp.join(ROOT, "configs", "upernet", name)))


def test_registering_a_taken_name_raises_and_again_is_a_no_op():
    registry = Registry("test_models")

    class MAEViT(nn.Module):  # another package's module of that name
        pass

    registry.register_module(name="MAEViT", module=MAEViT)
    with pytest.raises(downstream.RegistrationConflict, match=r"taken by .*test_mmseg_constructors"):
        downstream.register(registry, downstream.MAEViT)
    assert registry.module_dict["MAEViT"] is MAEViT  # not overridden
    downstream.register(registry, downstream.ViTDetSimplePyramid)
    downstream.register(registry, downstream.ViTDetSimplePyramid)  # importing again changes nothing
    assert registry.module_dict["ViTDetSimplePyramid"] is downstream.ViTDetSimplePyramid
    assert SEG_MODELS.module_dict["MAEViT"] is downstream.MAEViT


@pytest.mark.parametrize("registry, name", [("mmseg.registry.MODELS", "MAEViT"),
                                            ("mmseg.registry.OPTIM_WRAPPER_CONSTRUCTORS", OURS[0])])
def test_import_downstream_does_not_override_another_packages_registration(registry, name):
    module, attr = registry.rsplit(".", 1)
    code = (f"import {module} as m\n"
            f"class {name}: pass\n"
            f"m.{attr}.register_module(name={name!r}, module={name})\n"
            f"try:\n"
            f"    import downstream\n"
            f"except KeyError as e:\n"
            f"    print(type(e).__name__, e)\n"
            f"assert m.{attr}.module_dict[{name!r}] is {name}\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "RegistrationConflict" in run.stdout and f"taken by __main__.{name}" in run.stdout, run.stdout


def test_the_check_is_for_training_and_names_mmdets_fix_in_mmdet_scope(tmp_path):
    cfg = _stock_mmseg_cfg()
    cfg.model.backbone.type = "MAEViT"
    cfg.optim_wrapper.constructor = "LearningRateDecayOptimizerConstructor"
    cfg.default_scope = "mmdet"  # mmdet has a constructor of that name too, grouping by ConvNeXt's names
    with pytest.raises(ValueError, match="constructor='LayerDecayOptimWrapperConstructor'"):
        check_layer_decay_constructor(cfg)
    stale = Config.fromfile(STOCK_SWAP)
    stale.optim_wrapper.constructor = "LayerDecayOptimizerConstructor"  # a run dumped before the rename
    stale.work_dir = str(tmp_path)
    assert build_runner(stale, train=False) is not None  # an evaluation builds no optimizer: not refused
    with pytest.raises(ValueError, match="MAEViTLayerDecayOptimizerConstructor"):
        build_runner(stale)
