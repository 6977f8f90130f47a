"""mmengine classification: fine-tune / partial / linear probe from an MAE checkpoint, top-k metric."""
import os

import pytest
import torch

pytest.importorskip("mmengine")
from mmengine.config import Config  # noqa: E402

import mae_backbone.engine  # noqa: E402,F401
from mae_backbone.engine import TopKAccuracy, build_runner  # noqa: E402
from mae_backbone.models import mae_vit_tiny_patch16  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLS = os.path.join(ROOT, "configs", "classification")
FMNIST = "/usr/share/datasets/fashion-mnist"
needs_fmnist = pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist not installed")


@pytest.fixture(scope="module")
def mae_ckpt(tmp_path_factory):
    """An MAE checkpoint in the official layout with the Fashion-MNIST encoder shape."""
    torch.manual_seed(0)
    m = mae_vit_tiny_patch16(img_size=28, patch_size=4, in_chans=1, embed_dim=96, depth=6, num_heads=3,
                             decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=2)
    path = tmp_path_factory.mktemp("mae") / "mae_fmnist.pth"
    torch.save({"model": m.state_dict()}, path)
    return m, str(path)


def small(cfg_name, work_dir, **model):
    cfg = Config.fromfile(os.path.join(CLS, cfg_name))
    cfg.merge_from_dict(dict(
        work_dir=str(work_dir), model=model, train_cfg=dict(max_epochs=1, val_interval=1),
        train_dataloader=dict(batch_size=32, num_workers=0, dataset=dict(limit=96)),
        val_dataloader=dict(batch_size=64, num_workers=0, dataset=dict(limit=64)),
        visualizer=dict(vis_backends=[dict(type="LocalVisBackend")])))
    return cfg


@needs_fmnist
def test_partial_finetune_from_mae_trains_only_last_blocks(tmp_path, mae_ckpt):
    mae, path = mae_ckpt
    runner = build_runner(small("vit-d96-p4_mae-partial_1xb256-1e_fashion-mnist.py", tmp_path,
                                pretrained=path, finetune_blocks=2))
    clf = runner.model.model
    assert set(runner.model.load_report.missing) == {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    assert torch.equal(clf.blocks[0].attn.qkv.weight, mae.blocks[0].attn.qkv.weight)
    metrics = runner.train() and runner.val_loop.run()
    assert set(metrics) == {"accuracy/top1", "accuracy/top5"} and 0 <= metrics["accuracy/top1"] <= 100
    for i in range(4):  # frozen blocks: bit-identical to the checkpoint after training
        assert torch.equal(clf.blocks[i].mlp.fc1.weight, mae.blocks[i].mlp.fc1.weight)
    assert not torch.equal(clf.blocks[5].mlp.fc1.weight, mae.blocks[5].mlp.fc1.weight)
    assert torch.equal(clf.patch_embed.proj.weight, mae.patch_embed.proj.weight)


@needs_fmnist
def test_linear_probe_with_lars_trains_the_head_only(tmp_path, mae_ckpt):
    mae, path = mae_ckpt
    runner = build_runner(small("vit-d96-p4_mae-linprobe_1xb256-1e_fashion-mnist.py", tmp_path, pretrained=path))
    clf = runner.model.model
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    runner.train()
    from mae_backbone.engine.optim import MAELars
    assert isinstance(runner.optim_wrapper.optimizer, MAELars)  # built lazily by train()
    after = clf.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head.0.running_mean", "head.0.running_var", "head.0.num_batches_tracked",
                       "head.1.weight", "head.1.bias"}


def test_topk_accuracy_values():
    metric = TopKAccuracy(topk=(1, 2))
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.5], [0.2, 0.3, 0.5]])
    metric.process(None, [dict(logits=l, label=torch.tensor(y)) for l, y in zip(logits, [1, 2, 0])])
    assert metric.compute_metrics(metric.results) == {"top1": pytest.approx(100 / 3), "top2": pytest.approx(200 / 3)}
    with pytest.raises(ValueError, match="topk"):
        TopKAccuracy(topk=(0,))


@needs_fmnist
def test_tools_test_evaluates_a_classification_checkpoint(tmp_path, mae_ckpt):
    import subprocess
    import sys
    _, path = mae_ckpt
    cfg = os.path.join(CLS, "vit-d96-p4_mae-ft_1xb256-1e_fashion-mnist.py")
    common = ["--cfg-options", "train_dataloader.dataset.limit=64", "train_dataloader.batch_size=32",
              "val_dataloader.dataset.limit=128"]
    train = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train.py"), cfg, "--work-dir",
                            str(tmp_path / "ft"), *common, f"model.pretrained={path}"],
                           capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert train.returncode == 0, train.stderr[-3000:]
    test = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "test.py"), cfg, str(tmp_path / "ft" / "epoch_1.pth"),
                           "--work-dir", str(tmp_path / "test"), *common],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert test.returncode == 0, test.stderr[-3000:]
    line = [l for l in test.stdout.splitlines() if l.startswith("accuracy/top1")][-1]
    top1 = float(line.split()[1])
    # the same checkpoint, evaluated on the same 128 images, gives the number the training run logged
    logged = open(next((tmp_path / "ft").glob("*/*.log"))).read()
    assert f"accuracy/top1: {top1:.4f}" in logged
    # a checkpoint of another head (linear probe) does not fit the fine-tuning model: a clear failure
    lp_cfg = os.path.join(CLS, "vit-d96-p4_mae-linprobe_1xb256-1e_fashion-mnist.py")
    wrong = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "test.py"), lp_cfg,
                            str(tmp_path / "ft" / "epoch_1.pth"), "--work-dir", str(tmp_path / "test2"), *common],
                           capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert wrong.returncode != 0
    assert "do not match exactly" in wrong.stderr and "missing keys in source state_dict: model.norm.weight" in wrong.stderr


@pytest.mark.parametrize("size,blr,decay,drop_path,epochs", [
    ("base-p16", 5e-4, 0.65, 0.1, 100), ("large-p16", 1e-3, 0.75, 0.2, 50), ("huge-p14", 1e-3, 0.75, 0.3, 50)])
def test_finetune_and_linprobe_recipes(size, blr, decay, drop_path, epochs):
    """The official FINETUNE.md / LINPROBE recipes (paper Tables 9 and 10)."""
    from mae_backbone.engine import scale_lr
    [ft_name] = [f for f in os.listdir(CLS) if f.startswith(f"vit-{size}_mae-ft")]
    ft = Config.fromfile(os.path.join(CLS, ft_name))
    assert (ft.blr, ft.optim_wrapper.paramwise_cfg.layer_decay, ft.model.drop_path_rate) == (blr, decay, drop_path)
    assert ft.train_cfg.max_epochs == epochs and ft.param_scheduler[0].end == 5
    assert ft.model.mixup == dict(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)
    assert ft.model.global_pool == "avg" and ft.model.finetune_blocks == "all"
    aug = ft.train_dataloader.dataset.transform
    assert (aug.auto_augment, aug.re_prob, aug.color_jitter) == ("rand-m9-mstd0.5-inc1", 0.25, None)
    assert scale_lr(ft, world_size=8) == pytest.approx(blr * 1024 / 256)
    lp = Config.fromfile(os.path.join(CLS, f"vit-{size}_mae-linprobe_8xb512-accum4-90e_in1k.py"))
    assert lp.model.arch == ft.model.arch and lp.model.linear_probe and lp.model.global_pool == "token"
    assert lp.model.finetune_blocks == 0 and lp.optim_wrapper.optimizer.type == "LARS"
    assert lp.optim_wrapper.optimizer.weight_decay == 0 and lp.train_cfg.max_epochs == 90
    assert scale_lr(lp, world_size=8) == pytest.approx(0.1 * 16384 / 256)
    assert lp.train_dataloader.dataset.transform.auto_augment is None
    partial = Config.fromfile(os.path.join(CLS, f"vit-{size}_mae-partial_8xb128_in1k.py"))
    assert partial.model.finetune_blocks == 4 and partial.model.arch == ft.model.arch


def test_lars_linear_probe_matches_official_update():
    """The registered LARS with weight decay 0 must still apply the trust ratio to matrices (not biases)."""
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
    from reference_mae import official_lars_step
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 3)
    ref = torch.nn.Linear(8, 3)
    ref.load_state_dict(head.state_dict())
    ctor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type="LayerDecayOptimWrapperConstructor",
        optim_wrapper_cfg=dict(optimizer=dict(type="LARS", lr=0.1, weight_decay=0.0, momentum=0.9))))
    opt = ctor(head).optimizer
    state = None
    for _ in range(2):
        x = torch.randn(4, 8)
        for m in (head, ref):
            m.zero_grad()
            m(x).square().sum().backward()
        opt.step()
        state = official_lars_step(list(ref.parameters()), lr=0.1, state=state)
    assert torch.allclose(head.weight, ref.weight, atol=1e-6) and torch.allclose(head.bias, ref.bias, atol=1e-6)


def test_ambiguous_mixup_settings_are_rejected():
    from mae_backbone.engine import MAEClassifier
    kw = dict(arch="vit_tiny_patch16", num_classes=4, img_size=32, depth=1)
    with pytest.raises(ValueError, match="inside it"):
        MAEClassifier(mixup=dict(mixup_alpha=0.8), label_smoothing=0.1, **kw)
    with pytest.raises(ValueError, match="mixes nothing"):
        MAEClassifier(mixup=dict(mixup_alpha=0.0, cutmix_alpha=0.0), **kw)


def test_lars_given_a_plain_parameter_list_splits_matrices_from_biases():
    from mae_backbone.engine.optim import MAELars
    from reference_mae import official_lars_step
    torch.manual_seed(0)
    head, ref = torch.nn.Linear(8, 3), torch.nn.Linear(8, 3)
    ref.load_state_dict(head.state_dict())
    opt = MAELars(head.parameters(), lr=0.1, weight_decay=0.0, momentum=0.9)
    assert [g["always_adapt"] for g in opt.param_groups] == [True, False]
    x = torch.randn(4, 8)
    for m in (head, ref):
        m(x).square().sum().backward()
    opt.step()
    official_lars_step(list(ref.parameters()), lr=0.1)
    assert torch.allclose(head.weight, ref.weight, atol=1e-6) and torch.allclose(head.bias, ref.bias, atol=1e-6)
