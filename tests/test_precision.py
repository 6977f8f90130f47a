"""The precision rule (mae_backbone.precision) and everything that asks it: the config rewrite (--amp and every
build_runner), AutocastOptimWrapper, MAEViT's own autocast, the benchmark. Devices are simulated: no test depends
on this CPU having native bf16 or on a GPU."""
from __future__ import annotations

import os.path as osp
import warnings

import pytest
import torch
from mmengine.config import Config

from mae_backbone import precision
from mae_backbone.precision import canonical_name, resolve_precision

ROOT = osp.join(osp.dirname(__file__), "..")


@pytest.fixture
def gpu(monkeypatch):
    """Simulate a CUDA device of compute capability ``cc`` (a tuple) for the precision rule (the real threshold
    in ``cuda_native_bf16`` decides)."""
    def set_cc(cc):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: cc)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(precision, "_WARNED", set())
        precision.cuda_native_bf16.cache_clear()
    yield set_cc
    precision.cuda_native_bf16.cache_clear()


# ----------------------------------------------------------------------------- the rule
def test_names_and_aliases():
    assert [canonical_name(x) for x in ("bf16", "bfloat16", torch.bfloat16, "fp16", "float16", "half",
                                        "fp32", "off", None, torch.float32)] == ["bf16"] * 3 + ["fp16"] * 3 + ["fp32"] * 4
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        canonical_name("int8")


def test_cpu_with_native_bf16_runs_bf16(cpu_bf16):
    cpu_bf16(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = resolve_precision("bf16", "cpu")
    assert (p.name, p.dtype, p.dtype_name, p.reason, p.loss_scaling) == ("bf16", torch.bfloat16, "bfloat16", "", False)
    with p.autocast():
        assert (torch.randn(2, 3) @ torch.randn(3, 2)).dtype == torch.bfloat16


def test_cpu_without_native_bf16_runs_fp32_with_one_warning(cpu_bf16):
    cpu_bf16(False)
    with pytest.warns(RuntimeWarning, match=r"bf16 requested: this CPU \(.*\) has no native bf16.*running fp32"):
        p = resolve_precision("bfloat16", "cpu")
    assert (p.name, p.requested, p.dtype) == ("fp32", "bf16", None) and "emulate" in p.reason
    with p.autocast():
        assert (torch.randn(2, 3) @ torch.randn(3, 2)).dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same decision warns once per process
        assert resolve_precision("bf16", "cpu").name == "fp32"


def test_fp32_is_fp32_and_fp16_needs_loss_scaling_off_the_cpu(cpu_bf16, gpu):
    cpu_bf16(True)
    for req in ("fp32", "off", None):
        assert resolve_precision(req, "cpu").name == "fp32"
    with pytest.raises(ValueError, match="fp16 needs loss scaling, which mmengine's AmpOptimWrapper runs on CUDA"):
        resolve_precision("fp16", "cpu")  # asked for explicitly (--amp fp16)
    with pytest.warns(RuntimeWarning, match="running fp32"):
        assert resolve_precision("fp16", "cpu", strict=False).name == "fp32"  # a config's AmpOptimWrapper
    gpu((7, 0))
    assert resolve_precision("fp16", "cuda").name == "fp16"
    assert resolve_precision("fp16", "mps").name == "fp16"  # other accelerators: torch / mmengine decide
    with pytest.raises(ValueError, match="this part cannot do"):
        resolve_precision("fp16", "cuda", loss_scaling=False)


@pytest.mark.parametrize("cc, scaling, expected", [((9, 0), True, "bf16"), ((8, 0), False, "bf16"),
                                                   ((7, 5), True, "fp16"), ((7, 0), False, "fp32")])
def test_gpu_rule(gpu, cc, scaling, expected):
    gpu(cc)
    if expected == "bf16":
        p = resolve_precision("bf16", "cuda", loss_scaling=scaling)
    else:
        with pytest.warns(RuntimeWarning, match=rf"compute capability {cc[0]}\.{cc[1]}\) has no native bf16"):
            p = resolve_precision("bf16", "cuda", loss_scaling=scaling)
    assert p.name == expected and p.device_type == "cuda"
    assert p.loss_scaling == (expected == "fp16")
    assert resolve_precision("fp16", "cuda:0").name == "fp16"


@pytest.mark.parametrize("caps, env, native", [
    (dict(architecture="x86_64", avx2=True, avx512_bf16=False, amx_tile=False), {}, False),   # Zen 3
    (dict(architecture="x86_64", avx512_bf16=True), {}, True),                                # Zen 4 / 5
    (dict(architecture="x86_64", amx_bf16=True, amx_tile=True), {}, True),                    # Sapphire Rapids
    (dict(architecture="x86_64", avx512_bf16=True), {"DNNL_MAX_CPU_ISA": "AVX2"}, False),     # oneDNN capped
    (dict(architecture="x86_64", avx512_bf16=True), {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, True),
    (dict(architecture="aarch64", bf16=True), {}, True),                                       # Neoverse V1
    (dict(architecture="aarch64", neon=True), {}, False),
])
def test_cpu_native_bf16_from_feature_flags(monkeypatch, caps, env, native):
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(precision, "_cpu_capabilities", lambda: caps)
    precision.cpu_native_bf16.cache_clear()
    try:
        assert precision.cpu_native_bf16() is native
    finally:
        precision.cpu_native_bf16.cache_clear()


@pytest.mark.skipif(not hasattr(torch.cpu, "get_capabilities"), reason="torch < 2.9 has no get_capabilities")
def test_this_cpu_is_read_from_torch():
    """The real query agrees with torch's own flags (whatever this machine is)."""
    precision.cpu_native_bf16.cache_clear()
    caps = torch.cpu.get_capabilities()
    if caps.get("architecture") == "x86_64" and not (precision._onednn_isa_cap()):
        assert precision.cpu_native_bf16() == bool(caps.get("avx512_bf16") or caps.get("amx_tile"))


# ----------------------------------------------------------------------------- configs: --amp and build_runner
def _pretrain_cfg(**ow):
    return Config(dict(optim_wrapper=dict(type="AutocastOptimWrapper", dtype="bfloat16", accumulative_counts=4,
                                          constructor="LayerDecayOptimWrapperConstructor",
                                          optimizer=dict(type="AdamW"), **ow)))


def test_config_precision_follows_the_device(cpu_bf16, gpu):
    from mae_backbone.engine.amp import set_amp
    cpu_bf16(True)
    cfg = _pretrain_cfg()
    assert set_amp(cfg, device="cpu").name == "bf16"
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype) == ("AutocastOptimWrapper", "bfloat16")
    cpu_bf16(False)
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        assert set_amp(cfg, device="cpu").name == "fp32"
    assert cfg.optim_wrapper.type == "OptimWrapper" and "dtype" not in cfg.optim_wrapper
    assert cfg.optim_wrapper.accumulative_counts == 4 and cfg.optim_wrapper.constructor  # the rest untouched
    gpu((7, 0))  # V100 asked for the config's bf16: fp16 with dynamic loss scaling
    cfg = _pretrain_cfg()
    with pytest.warns(RuntimeWarning, match="running fp16 with dynamic loss scaling"):
        set_amp(cfg, device="cuda")
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype, cfg.optim_wrapper.loss_scale) == (
        "AmpOptimWrapper", "float16", "dynamic")
    gpu((9, 0))
    cfg = _pretrain_cfg()
    set_amp(cfg, device="cuda")
    assert cfg.optim_wrapper.type == "AutocastOptimWrapper"


def test_amp_flag_overrides_the_config(cpu_bf16):
    from mae_backbone.engine.amp import set_amp
    cpu_bf16(True)
    cfg = _pretrain_cfg()
    set_amp(cfg, "off", device="cpu")
    assert cfg.optim_wrapper.type == "OptimWrapper" and "dtype" not in cfg.optim_wrapper
    set_amp(cfg, "bf16", device="cpu")
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype) == ("AutocastOptimWrapper", "bfloat16")
    with pytest.raises(ValueError, match="not on a CPU"):
        set_amp(cfg, "fp16", device="cpu")
    with pytest.raises(ValueError, match="amp must be one of"):
        set_amp(cfg, "int8", device="cpu")


def test_detection_config_autocasts_backbone_and_neck_only(cpu_bf16, gpu):
    pytest.importorskip("mmdet")
    from mae_backbone.engine.amp import requested_precision, set_amp
    path = osp.join(ROOT, "configs", "mask_rcnn", "mask-rcnn_mae-vit-b-vitdet_16xb4-lsj-100e_coco.py")
    cfg = Config.fromfile(path)
    assert requested_precision(cfg) == "bf16"  # from the config's autocast_modules
    cpu_bf16(True)
    set_amp(cfg, device="cpu")
    assert (cfg.autocast_modules, cfg.optim_wrapper.type) == (dict(backbone="bfloat16", neck="bfloat16"), "OptimWrapper")
    cpu_bf16(False)
    cfg = Config.fromfile(path)
    with pytest.warns(RuntimeWarning):
        set_amp(cfg, device="cpu")
    assert (cfg.autocast_modules, cfg.optim_wrapper.type) == (dict(backbone=None, neck=None), "OptimWrapper")
    gpu((7, 5))  # T4: the whole detector in fp16 with loss scaling (mmcv's ops have fp16 kernels)
    cfg = Config.fromfile(path)
    with pytest.warns(RuntimeWarning):
        set_amp(cfg, device="cuda")
    assert cfg.autocast_modules == dict(backbone=None, neck=None)
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype) == ("AmpOptimWrapper", "float16")


def test_fsdp_mixed_precision_follows(cpu_bf16, gpu):
    from mae_backbone.engine.amp import set_amp

    def cfg():
        c = _pretrain_cfg()
        c.strategy = dict(type="FSDPStrategy", model_wrapper=dict(mixed_precision=dict(param_dtype="bfloat16")))
        return c
    cpu_bf16(True)
    c = cfg()
    set_amp(c, device="cpu")
    assert c.strategy.model_wrapper.mixed_precision == dict(param_dtype="bfloat16", reduce_dtype="float32",
                                                            buffer_dtype="float32")
    cpu_bf16(False)
    c = cfg()
    with pytest.warns(RuntimeWarning):
        set_amp(c, device="cpu")
    assert c.strategy.model_wrapper.mixed_precision is None and c.optim_wrapper.type == "OptimWrapper"
    gpu((7, 0))
    c = cfg()
    with pytest.warns(RuntimeWarning):
        set_amp(c, device="cuda")
    assert c.strategy.model_wrapper.mixed_precision.param_dtype == "float16"
    assert c.optim_wrapper.type == "AmpOptimWrapper"


# ----------------------------------------------------------------------------- optimizer wrappers, benchmarks
def test_autocast_wrapper_falls_back_to_fp32_without_native_bf16(cpu_bf16):
    from mmengine.registry import OPTIM_WRAPPERS
    import mae_backbone.engine  # noqa: F401  registration
    cpu_bf16(False)
    lin = torch.nn.Linear(4, 4)
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        wrapper = OPTIM_WRAPPERS.build(dict(type="AutocastOptimWrapper", dtype="bfloat16",
                                            optimizer=torch.optim.SGD(lin.parameters(), lr=0.1)))
    assert wrapper.precision.name == "fp32" and wrapper.dtype is None
    with wrapper.optim_context(lin):
        assert lin(torch.randn(2, 4)).dtype == torch.float32


def test_benchmark_rows_report_the_precision_that_ran(cpu_bf16):
    from benchmarks.pretrain import compare_pretrain_steps
    from benchmarks.measure import ran_precision
    cpu_bf16(False)
    with pytest.warns(RuntimeWarning):
        assert ran_precision("bf16", "cpu") == "fp32"
    rows = compare_pretrain_steps(("ours",), arch="mae_vit_tiny_patch16", batch=1, dtype="bf16", img_size=32,
                                  warmup=0, repeats=1)
    assert rows[0]["dtype"] == "fp32"
    cpu_bf16(True)
    assert ran_precision("bf16", "cpu") == "bf16" and ran_precision("fp32", "cpu") == "fp32"


def test_config_fp16_and_loss_scale(cpu_bf16, gpu):
    from mae_backbone.engine.amp import set_amp

    def amp_cfg(**kw):
        return Config(dict(optim_wrapper=dict(type="AmpOptimWrapper", loss_scale=512.0, optimizer=dict(type="SGD"),
                                              **kw)))
    cpu_bf16(True)
    cfg = amp_cfg(use_fsdp=True)
    with pytest.warns(RuntimeWarning, match="running fp32"):  # e.g. tools/test.py of an fp16 config on a CPU
        assert set_amp(cfg, device="cpu").name == "fp32"
    assert dict(cfg.optim_wrapper) == dict(type="OptimWrapper", optimizer=dict(type="SGD"))  # AMP-only keys gone
    with pytest.raises(ValueError, match="not on a CPU"):
        set_amp(amp_cfg(), "fp16", device="cpu")
    gpu((9, 0))
    cfg = amp_cfg()
    set_amp(cfg, device="cuda")
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype, cfg.optim_wrapper.loss_scale) == (
        "AmpOptimWrapper", "float16", 512.0)  # the config's own loss scale stays
    cfg = amp_cfg(dtype="bfloat16")
    set_amp(cfg, device="cuda")
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype) == ("AmpOptimWrapper", "bfloat16")  # as asked
    cfg = amp_cfg(dtype="bfloat16")
    set_amp(cfg, device="cpu")  # mmengine's AMP wrapper refuses CPUs: the same bf16 by autocast
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype) == ("AutocastOptimWrapper", "bfloat16")
    assert "loss_scale" not in cfg.optim_wrapper


def test_a_config_request_changes_only_what_asked(cpu_bf16):
    pytest.importorskip("mmdet")
    from mae_backbone.engine.amp import set_amp
    cpu_bf16(True)
    cfg = Config.fromfile(osp.join(ROOT, "configs", "mask_rcnn", "mask-rcnn_mae-vit-b-vitdet_16xb4-lsj-100e_coco.py"))
    cfg.autocast_modules.backbone = None  # only the neck asks
    set_amp(cfg, device="cpu")
    assert cfg.autocast_modules == dict(backbone=None, neck="bfloat16")
    set_amp(cfg, "bf16", device="cpu")  # --amp sets every part
    assert cfg.autocast_modules == dict(backbone="bfloat16", neck="bfloat16")
    fsdp = Config(dict(optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="SGD")),
                       strategy=dict(type="FSDPStrategy", model_wrapper=dict(mixed_precision=dict(param_dtype="bf16")))))
    set_amp(fsdp, device="cpu")
    assert fsdp.optim_wrapper.type == "OptimWrapper"  # FSDP's bf16 parameters asked; no autocast added
    assert fsdp.strategy.model_wrapper.mixed_precision.param_dtype == "bfloat16"
    none = Config(dict(optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="SGD")),
                       strategy=dict(type="FSDPStrategy", model_wrapper=dict(mixed_precision=None))))
    set_amp(none, "bf16", device="cpu")
    assert none.strategy.model_wrapper.mixed_precision is None  # not switched on by --amp


def test_unknown_wrapper_types_are_left_alone_or_refused(cpu_bf16, gpu):
    from mae_backbone.engine.amp import set_amp
    cpu_bf16(True)
    cfg = Config(dict(optim_wrapper=dict(type="OptimWrapperDict")))
    set_amp(cfg, device="cpu")
    assert cfg.optim_wrapper == dict(type="OptimWrapperDict")
    with pytest.raises(ValueError, match="cannot change optim_wrapper type 'OptimWrapperDict'"):
        set_amp(cfg, "off", device="cpu")
    gpu((7, 0))  # a V100: fp16 would need a loss scaler this wrapper may not have; nothing of it is changed
    cfg = Config(dict(optim_wrapper=dict(type="MyWrapper"),
                      strategy=dict(type="FSDPStrategy", model_wrapper=dict(mixed_precision=dict(param_dtype="bfloat16")))))
    set_amp(cfg, device="cuda")
    assert cfg.optim_wrapper == dict(type="MyWrapper")
    assert cfg.strategy.model_wrapper.mixed_precision == dict(param_dtype="bfloat16")


def test_build_runner_applies_amp(tmp_path, photo_dir, cpu_bf16):
    from mae_backbone.engine import build_runner
    demo = osp.join(ROOT, "configs", "mae", "mae_vit-demo-p8_1xb32-40e_photos.py")

    def cfg():
        c = Config.fromfile(demo)
        c.merge_from_dict(dict(work_dir=str(tmp_path), optim_wrapper=dict(type="AutocastOptimWrapper", dtype="bfloat16"),
                               model=dict(img_size=32, patch_size=8, depth=1, decoder_depth=1),
                               train_dataloader=dict(dataset=dict(root=str(photo_dir)))))
        return c
    cpu_bf16(True)
    assert build_runner(cfg(), amp="off").cfg.optim_wrapper.type == "OptimWrapper"
    assert build_runner(cfg()).cfg.optim_wrapper.type == "AutocastOptimWrapper"
    cpu_bf16(False)
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        assert build_runner(cfg()).cfg.optim_wrapper.type == "OptimWrapper"
