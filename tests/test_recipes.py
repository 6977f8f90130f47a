"""The paper configs against their published sources: docs/recipes.md is generated from the resolved configs
(tools/recipe_table.py) and must be current; every row marked "match" must equal its source; plus the pieces that
make the recipes faithful (test canvas, per-group cosine floor, weight-decay rules, retimed schedules)."""
import importlib.util
import logging
import math
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _recipe_table():
    if osp.join(ROOT, "tools") not in sys.path:  # as when run as a script: recipe_resolve beside it
        sys.path.insert(0, osp.join(ROOT, "tools"))
    spec = importlib.util.spec_from_file_location("recipe_table", osp.join(ROOT, "tools", "recipe_table.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["recipe_table"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def recipe_table():
    return _recipe_table()


def test_recipes_doc_is_generated_from_the_resolved_configs(recipe_table):
    with open(osp.join(ROOT, "docs", "recipes.md")) as f:
        doc = f.read()
    assert doc == recipe_table.render(), "docs/recipes.md is stale: run python tools/recipe_table.py --write"


def test_rows_marked_match_equal_their_source(recipe_table):
    assert recipe_table.mismatches() == []
    titles = [t for t, _, _ in recipe_table.tables()]
    assert len(titles) == 3 + 9 + 4 + 2  # pretraining B/L/H; FT / linprobe / partial B/L/H; Mask R-CNN x4; UperNet


def test_values_the_issue_names(recipe_table):
    """Spot values a user checks first, read through the same code as the doc."""
    rows = {t: {r.item: r for r in rows} for t, _, rows in recipe_table.tables()}
    assert rows["MAE pretraining, ViT-L"]["lr at batch 4096"].ours == "2.4e-3"
    assert rows["Fine-tuning, ViT-H"]["lr scale, block 0"].ours == recipe_table.fmt(0.75 ** 32)
    assert rows["Fine-tuning, ViT-B"]["optimizer steps"].ours.startswith("125,100")
    for size in ("ViT-B", "ViT-L"):
        for variant in ("ViTDet", "MAE-paper FPN"):
            r = rows[f"Mask R-CNN, {size}, {variant}"]
            assert r["test canvas of a 1024x768 image"].ours == "1024x1024 (64x64 tokens)"
    assert rows["Mask R-CNN, ViT-B, MAE-paper FPN"]["FPN taps (blocks)"].ours == "(2, 5, 8, 11)"
    assert rows["Mask R-CNN, ViT-L, MAE-paper FPN"]["FPN taps (blocks)"].ours == "(5, 11, 17, 23)"
    assert rows["UperNet on ADE20K, ViT-L"]["lr scale, block 0"].ours == recipe_table.fmt(0.8 ** 24)
    assert rows["UperNet on ADE20K, ViT-B"]["ms + flip short sides"].ours == "512, 512, 512, 640, 768, 896"


def test_a_stale_doc_is_reported(recipe_table, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(recipe_table, "DOC", str(tmp_path / "recipes.md"))
    (tmp_path / "recipes.md").write_text("old\n")
    monkeypatch.setattr(recipe_table, "render", lambda: "new\n")
    monkeypatch.setattr(recipe_table, "mismatches", lambda: [])
    assert recipe_table.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err


# ----------------------------------------------------------------------------- detection test canvas
@pytest.mark.parametrize("name", ["mask-rcnn_mae-vit-b-vitdet_16xb4-lsj-100e_coco.py",
                                  "mask-rcnn_mae-vit-l-fpn_16xb4-lsj-100e_coco.py"])
@pytest.mark.parametrize("hw", [(768, 1024), (1000, 600), (300, 1200), (1024, 1024), (2000, 1500)])
def test_detection_test_pipeline_gives_a_64x64_grid_for_any_aspect_ratio(tmp_path, name, hw):
    """Training runs on a 1024x1024 canvas (BatchFixedSizePad, training only); the test pipeline pads to the same
    canvas, at the bottom / right, with the pixel mean (0 after normalisation, as detectron2 pads)."""
    import downstream  # noqa: F401
    from mmcv.transforms import Compose
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope("mmdet")
    cfg = Config.fromfile(osp.join(ROOT, "configs", "mask_rcnn", name))
    path = tmp_path / "img.jpg"
    Image.fromarray(np.full((*hw, 3), 200, np.uint8)).save(path, quality=100)
    steps = [t for t in cfg.test_pipeline if t["type"] != "LoadAnnotations"]
    data = Compose(steps)(dict(img_path=str(path), img_id=0))
    pre = MODELS.build(cfg.model.data_preprocessor)
    out = pre(dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]]), training=False)
    x = out["inputs"]
    assert x.shape[-2:] == (1024, 1024) and (x.shape[-2] // 16, x.shape[-1] // 16) == (64, 64)
    h, w = out["data_samples"][0].img_shape
    assert max(h, w) == 1024 and abs(h / w - hw[0] / hw[1]) < 0.01  # resized, long side 1024, ratio kept
    if h < 1024:
        assert x[0, :, h:, :].abs().max() < 0.02  # the mean: ~0 after normalisation
    if w < 1024:
        assert x[0, :, :, w:].abs().max() < 0.02
    assert x[0, :, : h - 1, : w - 1].mean() > 0.5  # the image at the top left


def test_tiny_offline_detection_configs_keep_their_own_canvas():
    cfg = Config.fromfile(osp.join(ROOT, "configs", "mask_rcnn", "mask-rcnn_mae-vit-mini-fpn_1xb2-80i_offline-voc-arc.py"))
    assert not any(t["type"] in ("Pad", "PadToCanvas") for t in cfg.test_pipeline)
    assert cfg.model.neck.get("norm_cfg") is None and cfg.model.rpn_head.get("num_convs", 1) == 1


# ----------------------------------------------------------------------------- ADE20K multi-scale floor
def test_ms_flip_resize_floors_the_short_side_at_the_crop(tmp_path):
    """BEiT's SETR_Resize / mmseg 0.x min_size: short side max(512 r, 512), the long side follows the ratio."""
    import downstream  # noqa: F401
    from mmcv.transforms import Compose
    from mmengine.registry import init_default_scope
    init_default_scope("mmseg")
    cfg = Config.fromfile(osp.join(ROOT, "configs", "upernet",
                                   "upernet_mae-vit-b_8xb2-160k_ade20k-512x512_ms-flip-test.py"))
    tta = [t for t in cfg.tta_pipeline if t["type"] == "TestTimeAug"][0]
    img = np.zeros((375, 1300, 3), np.uint8)  # wider than 4:1 would be capped by (2048 r, 512 r); not here
    shapes = [Compose([r])(dict(img=img.copy(), img_shape=img.shape[:2], ori_shape=img.shape[:2]))["img"].shape[:2]
              for r in tta["transforms"][0]]
    for (h, w), r in zip(shapes, cfg.img_ratios):
        assert h == max(int(512 * r), 512) and w == pytest.approx(h * 1300 / 375, abs=1)


# ----------------------------------------------------------------------------- per-group cosine floor
def test_layer_scaled_cosine_matches_the_official_schedule():
    """facebookresearch/mae util/lr_sched.adjust_learning_rate: lr(e) = (min_lr + (lr - min_lr) * cos_term) x scale
    per group, after a linear warm-up. Groups far below min_lr must anneal down to min_lr x scale, not rise."""
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS

    import mae_backbone.engine  # noqa: F401
    lr, min_lr, warm, epochs, per_epoch = 4e-3, 1e-6, 5, 50, 4
    scales = [1.0, 0.75 ** 20, 0.75 ** 33]  # ViT-H (32 blocks): head, block 12, embeddings
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in scales]
    opt = torch.optim.SGD([dict(params=[p], lr=lr * s, lr_scale=s) for p, s in zip(params, scales)], lr=lr)
    wrapper = OptimWrapper(opt)
    cfgs = [dict(type="LinearLR", start_factor=1e-4, by_epoch=True, begin=0, end=warm, convert_to_iter_based=True),
            dict(type="LayerScaledCosineAnnealingLR", T_max=epochs - warm, eta_min=min_lr, by_epoch=True,
                 begin=warm, end=epochs, convert_to_iter_based=True)]
    scheds = [PARAM_SCHEDULERS.build(c, default_args=dict(optimizer=wrapper, epoch_length=per_epoch)) for c in cfgs]
    for it in range(epochs * per_epoch):
        e = it / per_epoch
        if e >= warm:
            cos = 0.5 * (1 + math.cos(math.pi * (e - warm) / (epochs - warm)))
            want = [(min_lr + (lr - min_lr) * cos) * s for s in scales]
            got = [g["lr"] for g in opt.param_groups]
            assert got == pytest.approx(want, rel=1e-6), it
        opt.step()
        for s in scheds:
            s.step()
    final = [g["lr"] for g in opt.param_groups]
    assert all(min_lr * s < f < 1.5 * min_lr * s for f, s in zip(final, scales))  # one step short of the floor
    assert final[2] < 1e-9  # an absolute 1e-6 floor would have raised this group's lr (it started at 3e-7)


# ----------------------------------------------------------------------------- weight-decay rules
def _decay_by_name(model, rule):
    from mae_backbone.param_groups import param_groups
    return {n: g["weight_decay"] for g in param_groups(model, 0.1, weight_decay_rule=rule) for n in g["names"]}


def test_weight_decay_rules_follow_their_sources():
    from mae_backbone.models import mae_vit_tiny_patch16, vit_tiny_patch16
    from mae_backbone.models.pyramid import LayerNorm2d
    mae = mae_vit_tiny_patch16(img_size=32, depth=2, decoder_depth=1)
    wd = _decay_by_name(mae, "norm_bias")  # official pretraining (timm add_weight_decay, no skip list)
    assert wd["cls_token"] == wd["mask_token"] == 0.1 and wd["blocks.0.norm1.weight"] == 0
    assert wd["blocks.0.attn.qkv.bias"] == 0
    wd = _decay_by_name(mae, "norm_bias_declared")  # official fine-tuning (no_weight_decay list)
    assert wd["cls_token"] == 0

    class Det(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = vit_tiny_patch16(img_size=32, depth=2, window_size=2, rel_pos="decomposed", use_cls_token=False,
                                             learnable_pos_embed=True)
            self.neck_norm = LayerNorm2d(8)
            self.head = torch.nn.Conv2d(8, 8, 1)
    det = Det()
    wd = _decay_by_name(det, "norm_layers_pos_embed")  # detectron2 (ViTDet)
    assert wd["backbone.pos_embed"] == 0 and wd["backbone.blocks.0.norm1.weight"] == 0
    assert wd["backbone.blocks.0.norm1.bias"] == 0
    assert wd["backbone.blocks.0.attn.rel_pos_h"] == 0.1 and wd["backbone.blocks.0.attn.qkv.bias"] == 0.1
    assert wd["neck_norm.weight"] == 0.1 and wd["head.bias"] == 0.1
    with pytest.raises(ValueError, match="norm_bias_declared"):
        _decay_by_name(det, "bias_only")


def test_constructor_takes_the_rule_and_refuses_unknown_keys():
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

    from mae_backbone.engine import MAEPretrainer
    model = MAEPretrainer(arch="mae_vit_tiny_patch16", img_size=32, patch_size=8, depth=2, decoder_depth=1)
    optim = dict(optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.05))

    def build(paramwise):
        return OPTIM_WRAPPER_CONSTRUCTORS.build(dict(type="LayerDecayOptimWrapperConstructor",
                                                     optim_wrapper_cfg=optim, paramwise_cfg=paramwise))(model)
    opt = build(dict(weight_decay_rule="norm_bias")).optimizer
    where = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert where[id(model.model.mask_token)] == 0.05 and where[id(model.model.cls_token)] == 0.05
    with pytest.raises(ValueError, match="weight_decay_rule"):
        build(dict(no_decay_names=["x"]))
    with pytest.raises(ValueError, match="unknown weight_decay_rule"):
        build(dict(weight_decay_rule="nope"))


# ----------------------------------------------------------------------------- schedules as parameters
def test_set_epochs_retimes_the_whole_schedule():
    from mae_backbone.engine import set_epochs
    cfg = Config.fromfile(osp.join(ROOT, "configs", "classification", "vit-large-p16_mae-partial_8xb128_in1k.py"))
    assert cfg.train_cfg.max_epochs == 100 and cfg.param_scheduler[1]["end"] == 100
    set_epochs(cfg, 200)
    warm, cos = cfg.param_scheduler
    assert cfg.train_cfg.max_epochs == 200 and cfg.epochs == 200 and warm["end"] == 5
    assert cos["begin"] == 5 and cos["end"] == 200 and cos["T_max"] == 195
    with pytest.raises(ValueError, match="cannot retime"):
        set_epochs(cfg, 5)  # the cosine would start after training ends
    # Fashion-MNIST: an iteration-counted warm-up (kept) overlapping an epoch-counted cosine over the whole budget
    fm = Config.fromfile(osp.join(ROOT, "configs", "classification", "vit-d96-p4_mae-partial_1xb256-1e_fashion-mnist.py"))
    set_epochs(fm, 20)
    warm, cos = fm.param_scheduler
    assert fm.train_cfg.max_epochs == 20 and (warm["end"], warm["by_epoch"]) == (20, False)
    assert (cos["begin"], cos["end"], cos["T_max"], cos["convert_to_iter_based"]) == (0, 20, 20, True)
    fm.param_scheduler[1] = dict(cos, by_epoch=False, end=4700, T_max=4700)
    with pytest.raises(ValueError, match="by_epoch=False"):
        set_epochs(fm, 2)  # a cosine counted in iterations cannot be retimed (an iteration warm-up alone is kept)
    # a step schedule: milestones scale with the epochs, the iteration-counted warm-up keeps its 250 iterations
    det = Config.fromfile(osp.join(ROOT, "configs", "mask_rcnn", "mask-rcnn_mae-vit-b-vitdet_16xb4-lsj-100e_coco.py"))
    set_epochs(det, 50)
    warm, steps = det.param_scheduler
    assert det.train_cfg.max_epochs == 50 and steps["end"] == 50 and steps["milestones"] == [44, 48]
    assert warm["end"] == 250 and not warm["by_epoch"]
    short = Config.fromfile(osp.join(ROOT, "configs", "mask_rcnn", "mask-rcnn_mae-vit-b-vitdet_16xb4-lsj-100e_coco.py"))
    with pytest.raises(ValueError, match="would merge"):
        set_epochs(short, 12)  # 22, 24 of 25 -> 11, 12 of 12: the second drop could never fire
    assert short.train_cfg.max_epochs == 25 and short.param_scheduler[1]["milestones"] == [22, 24]  # untouched
    # a cosine whose T_max does not span its phase cannot be retimed faithfully
    odd = Config.fromfile(osp.join(ROOT, "configs", "classification", "vit-base-p16_mae-ft_8xb128-100e_in1k.py"))
    odd.param_scheduler[1]["T_max"] = 200
    with pytest.raises(ValueError, match="T_max does not span"):
        set_epochs(odd, 50)


def test_a_schedule_that_does_not_end_with_training_is_reported(caplog):
    from mae_backbone.engine import check_schedule
    cfg = Config.fromfile(osp.join(ROOT, "configs", "classification", "vit-base-p16_mae-ft_8xb128-100e_in1k.py"))
    with caplog.at_level(logging.WARNING, logger="mae_backbone.engine.launch"):
        check_schedule(cfg)
        assert not caplog.records
        cfg.train_cfg.max_epochs = 200
        check_schedule(cfg)
    assert "flat at its end value" in caplog.text and "epochs=200" in caplog.text


def test_partial_configs_make_the_schedule_a_parameter():
    for size in ("base-p16", "large-p16", "huge-p14"):
        cfg = Config.fromfile(osp.join(ROOT, "configs", "classification", f"vit-{size}_mae-partial_8xb128_in1k.py"))
        assert cfg.epochs == cfg.train_cfg.max_epochs == cfg.param_scheduler[-1]["end"] == 100
        assert cfg.param_scheduler[-1]["type"] == "LayerScaledCosineAnnealingLR"


def test_partial_study_searches_the_schedule_per_k(tmp_path, monkeypatch):
    """--epochs 50 100 200: every k trained for each schedule (retimed config), the best per k reported, as the
    paper's appendix A.1 chose; finished points are skipped on a rerun. Training is replaced by a stub that
    reads the schedule the point was given."""
    from mae_backbone.engine import partial_study, study_report
    seen = []

    def fake_point(cfg, k, pretrained, work_dir, launcher="none", epochs=None, seed=None):
        cfg = Config(cfg.to_dict())
        if epochs is not None:
            partial_study.set_epochs(cfg, epochs)
        epochs = cfg.train_cfg.max_epochs
        seen.append((k, epochs, cfg.param_scheduler[-1]["end"], cfg.param_scheduler[-1]["T_max"]))
        top1 = {50: 70.0, 100: 80.0 - k, 200: 75.0 + k}[epochs]  # fewer blocks prefer the shorter run here
        return dict(init="MAE", k=str(k), blocks=k, epochs=cfg.train_cfg.max_epochs, seed=seed, top1=top1,
                    top5=99.0, train_seconds=1.0, trainable_params=10 * (k + 1))
    monkeypatch.setattr(partial_study, "run_point", fake_point)
    monkeypatch.setattr(study_report, "plot", lambda rows, f: f.write(repr(rows).encode()))
    ckpt = tmp_path / "mae.pth"
    ckpt.write_bytes(b"not read by the stub")
    config = osp.join(ROOT, "configs", "classification", "vit-base-p16_mae-partial_8xb128_in1k.py")
    rows = partial_study.run_study(config, [1, 8], str(ckpt), str(tmp_path / "s"), epochs=[50, 100, 200])
    assert sorted(seen) == sorted((k, e, e, e - 5) for k in (1, 8) for e in (50, 100, 200))
    assert len(rows) == 6 and (tmp_path / "s" / "mae_k1_e200").is_dir()
    best = {r["k"]: r["epochs"] for r in partial_study.best_per_k(partial_study.summarize(rows))}
    assert best == {"1": 100, "8": 200}
    md = (tmp_path / "s" / "study.md").read_text()
    assert "Best schedule per k" in md and "| MAE | 8 | 200 | 1 | 83.00 (1 run) |" in md
    seen.clear()
    partial_study.run_study(config, [1, 8], str(ckpt), str(tmp_path / "s"), epochs=[50, 100, 200])
    assert seen == []  # all six points were finished
    with pytest.raises(ValueError, match="cannot retime"):
        partial_study.run_study(config, [1], str(ckpt), str(tmp_path / "t"), epochs=[3])
    # --cfg-options epochs=E retimes the whole schedule here too (not only the config variable)
    seen.clear()
    partial_study.run_study(config, [1], str(ckpt), str(tmp_path / "v"), cfg_options={"epochs": 200}, epochs=None)
    assert seen == [(1, 200, 200, 195)]  # the point trained the retimed schedule
    with pytest.raises(ValueError, match="not both"):
        partial_study.run_study(config, [1], str(ckpt), str(tmp_path / "w"), cfg_options={"epochs": 200}, epochs=[50])


def test_partial_study_runs_each_point_per_seed_and_reports_the_spread(tmp_path, monkeypatch):
    """--seeds 0 1 2: one run per seed (the config's randomness.seed set), mean +- sample std in study_summary.csv
    and study.md, error bars in the plot; a rerun skips the finished runs."""
    import csv

    from mae_backbone.engine import partial_study, study_report
    seen = []

    def fake_point(cfg, k, pretrained, work_dir, launcher="none", epochs=None, seed=None):
        seen.append((k, seed, work_dir.name))
        top1 = 70.0 + k + 2.0 * seed  # seeds 0, 1, 2 -> +0, +2, +4: mean +2, std 2
        return dict(init="MAE" if pretrained else "random init", k=str(k), blocks=k, epochs=100, seed=seed,
                    top1=top1, top5=99.0, train_seconds=1.0, trainable_params=10)
    plotted = []
    monkeypatch.setattr(partial_study, "run_point", fake_point)
    monkeypatch.setattr(study_report, "plot", lambda summary, f: plotted.append(summary))
    ckpt = tmp_path / "mae.pth"
    ckpt.write_bytes(b"not read by the stub")
    config = osp.join(ROOT, "configs", "classification", "vit-base-p16_mae-partial_8xb128_in1k.py")
    out = tmp_path / "s"
    partial_study.run_study(config, [1, 4], str(ckpt), str(out), baseline_random_init=True, seeds=[0, 1, 2])
    assert len(seen) == 12 and ("mae_k1_s2") in {d for _, _, d in seen}
    with open(out / "study_summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 4
    mae4 = [r for r in summary if r["init"] == "MAE" and r["k"] == "4"][0]
    assert float(mae4["top1_mean"]) == 76.0 and float(mae4["top1_std"]) == 2.0 and mae4["runs"] == "3"
    assert "| MAE | 4 | 100 | 3 | 76.00 +- 2.00 |" in (out / "study.md").read_text()
    assert plotted and all(r["top1_std"] == 2.0 for r in plotted[-1])
    seen.clear()
    partial_study.run_study(config, [1, 4], str(ckpt), str(out), baseline_random_init=True, seeds=[0, 1, 2])
    assert seen == []
    with pytest.raises(ValueError, match="--seeds must be distinct"):
        partial_study.run_study(config, [1], str(ckpt), str(tmp_path / "t"), seeds=[0, 0])


def test_run_point_trains_with_the_seed_and_schedule_it_is_given(tmp_path, monkeypatch):
    from mae_backbone.engine import partial_study
    captured = {}

    class Stop(Exception):
        pass

    def fake_build_runner(cfg, launcher="none"):
        captured["cfg"] = cfg
        raise Stop
    monkeypatch.setattr(partial_study, "build_runner", fake_build_runner)
    cfg = Config.fromfile(osp.join(ROOT, "configs", "classification", "vit-base-p16_mae-partial_8xb128_in1k.py"))
    with pytest.raises(Stop):
        partial_study.run_point(cfg, 2, None, tmp_path / "p", epochs=50, seed=7)
    got = captured["cfg"]
    assert got.randomness.seed == 7 and got.randomness.diff_rank_seed  # the rest of randomness kept
    assert got.train_cfg.max_epochs == 50 and got.param_scheduler[-1]["T_max"] == 45 and got.model.finetune_blocks == 2
    assert cfg.randomness.seed == 0 and cfg.train_cfg.max_epochs == 100  # the caller's config is untouched
