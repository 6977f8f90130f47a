"""Mixed precision for parts of a model (``mae_backbone.precision.autocast_module`` / ``autocast_modules``, a
config's ``autocast_modules``): the device's rule, fp32 outputs, the module left as it is, under copies,
exceptions, ``torch.compile``, ``build_runner`` and a test-time-augmentation wrapper."""
from __future__ import annotations

import os.path as osp

import pytest
import torch
from mmengine.config import Config

ROOT = osp.join(osp.dirname(__file__), "..")


def test_backbone_autocast_is_fp32_without_native_bf16(cpu_bf16):
    pytest.importorskip("mmdet")
    from downstream import MAEViT
    from mae_backbone.precision import autocast_module, module_precision
    torch.manual_seed(0)
    bb = MAEViT(arch=dict(embed_dim=64, depth=2, num_heads=2), img_size=32, out_indices=(1,))
    autocast_module(bb, "bfloat16")
    x = torch.randn(1, 3, 32, 32)
    cpu_bf16(True)
    low = bb(x)[0]
    cpu_bf16(False)
    with pytest.warns(RuntimeWarning):
        same = bb(x)[0]
    autocast_module(bb, None)
    assert module_precision(bb) == "fp32"
    full = bb(x)[0]
    assert low.dtype == same.dtype == torch.float32
    assert torch.equal(same, full)  # fp32, not emulated bf16
    assert 0 < (low - full).norm() / full.norm() < 0.03  # bf16 where the CPU has it


def test_autocast_module_is_the_modules_own_setting(cpu_bf16):
    """Outputs fp32; the state dict, class and forward unchanged; a copy carries its own setting; an exception
    inside the forward does not leave autocast on; replacing and removing the setting work."""
    import copy
    import pickle
    from mae_backbone.precision import autocast_module, autocast_modules, module_precision
    cpu_bf16(True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    keys = list(model.state_dict())
    autocast_modules(model, {"0": "bfloat16"})
    autocast_module(model[0], "bf16")  # replaces, does not stack
    assert module_precision(model[0]) == "bf16" and len(model[0]._forward_pre_hooks) == 1
    assert list(model.state_dict()) == keys and type(model[0]) is torch.nn.Linear and "forward" not in vars(model[0])
    x = torch.randn(3, 8)
    inner = model[0](x)
    assert inner.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
    with torch.no_grad():
        exact = torch.nn.functional.linear(x, model[0].weight, model[0].bias)
    assert 0 < (inner - exact).abs().max() < 0.05  # computed in bf16, handed back in fp32
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin[0].weight.zero_()
        twin[0].bias.zero_()
    assert module_precision(twin[0]) == "bf16" and not twin[0](x).any() and model[0](x).any()  # its own weights
    pickle.loads(pickle.dumps(model))
    model[0].register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        model(x)
    assert not torch.is_autocast_enabled("cpu")  # closed although the forward raised
    autocast_module(model[0], None)
    assert module_precision(model[0]) == "fp32" and not model[0]._forward_pre_hooks
    with pytest.raises(ValueError, match="no submodule 'head'"):
        autocast_modules(model, {"head": "bf16"})
    with pytest.raises(ValueError, match="fp16 needs loss scaling"):
        autocast_module(model[0], "float16")


def test_build_runner_autocasts_the_configs_modules(tmp_path, photo_dir, cpu_bf16):
    from mae_backbone.engine import build_runner
    from mae_backbone.engine.hooks import AutocastModulesHook
    from mae_backbone.precision import module_precision
    cpu_bf16(True)
    c = Config.fromfile(osp.join(ROOT, "configs", "mae", "mae_vit-demo-p8_1xb32-40e_photos.py"))
    c.merge_from_dict(dict(work_dir=str(tmp_path), optim_wrapper=dict(type="OptimWrapper"),
                           model=dict(img_size=32, patch_size=8, depth=1, decoder_depth=1),
                           train_dataloader=dict(dataset=dict(root=str(photo_dir)))))
    c.autocast_modules = dict(model="bfloat16")
    runner = build_runner(c)
    hook = next(h for h in runner.hooks if isinstance(h, AutocastModulesHook))
    hook.before_run(runner)
    assert module_precision(runner.model.model) == "bf16" and module_precision(runner.model) == "fp32"


def test_autocast_parts_under_torch_compile_and_namedtuple_outputs(cpu_bf16):
    """torch.compile runs the hooks eagerly and traces the part under their autocast: the same numbers as eager."""
    import collections
    from mae_backbone.precision import autocast_module
    cpu_bf16(True)
    Pair = collections.namedtuple("Pair", "a b")

    class Part(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(16, 16)

        def forward(self, x):
            y = self.lin(x)
            return Pair(y, y.relu())

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.part, self.head = Part(), torch.nn.Linear(16, 4)

        def forward(self, x):
            out = self.part(x)
            assert out.a.dtype == out.b.dtype == torch.float32  # namedtuple fields handed back in fp32 too
            return self.head(out.b)

    torch.manual_seed(0)
    model = Model()
    autocast_module(model.part, "bf16")
    x = torch.randn(4, 16)
    eager = model(x)
    with torch.no_grad():
        exact = model.head(model.part.lin(x).relu())
    assert (eager - exact).abs().max() > 0  # the part ran in bf16
    compiled = torch.compile(model, backend="aot_eager")(x)
    torch.testing.assert_close(compiled, eager, rtol=0, atol=0)


def test_stock_swap_configs_keep_amp_to_the_backbone(cpu_bf16):
    """--amp bf16 on a stock config with only the backbone switched: the backbone in bf16, the rest fp32 (mmcv's
    RoIAlign / NMS have no bf16 kernels), as for our own configs."""
    pytest.importorskip("mmdet")
    from mae_backbone.engine.amp import set_amp
    cpu_bf16(True)
    cfg = Config.fromfile(osp.join(ROOT, "configs", "mask_rcnn", "mask-rcnn_mae-vit-b-fpn_stock-r50-1x_coco.py"))
    set_amp(cfg, device="cpu")
    assert cfg.autocast_modules == dict(backbone=None) and cfg.optim_wrapper.type == "OptimWrapper"
    set_amp(cfg, "bf16", device="cpu")
    assert cfg.autocast_modules == dict(backbone="bfloat16") and cfg.optim_wrapper.type == "OptimWrapper"


def test_autocast_modules_hook_reaches_through_a_test_time_augmentation_wrapper(cpu_bf16):
    from types import SimpleNamespace
    from mae_backbone.engine.hooks import AutocastModulesHook
    from mae_backbone.precision import module_precision
    cpu_bf16(True)

    from mmengine.model import BaseTTAModel

    class TTA(BaseTTAModel):  # tools/test.py --tta wraps the model so
        def merge_preds(self, data_samples_list):
            return data_samples_list

    class Net(torch.nn.Module):
        def test_step(self, data):
            return self.head(self.backbone(data))

    inner = Net()
    inner.backbone, inner.head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    AutocastModulesHook(dict(backbone="bfloat16")).before_run(SimpleNamespace(model=TTA(inner)))
    assert module_precision(inner.backbone) == "bf16" and module_precision(inner.head) == "fp32"
    with pytest.raises(ValueError, match="no submodule 'neck'"):
        AutocastModulesHook(dict(neck="bfloat16")).before_run(SimpleNamespace(model=TTA(inner)))
