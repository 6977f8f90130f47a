"""A non-finite loss never trains on silently: the run stops at that iteration, naming the terms and the fixes,
before a checkpoint of poisoned weights is written; a run of fp16 steps skipped for overflow stops the same way."""
import os
import types

import pytest
import torch

pytest.importorskip("mmengine")
from mae_backbone.engine import build_runner  # noqa: E402
from mae_backbone.engine.guards import FiniteLossHook, NonFiniteLossError  # noqa: E402
from test_engine import tiny_cfg  # noqa: E402


def fake_runner(wrapper=None, last_ckpt=None):
    hub = types.SimpleNamespace(get_info=lambda key: last_ckpt if key == "last_ckpt" else None)
    return types.SimpleNamespace(iter=6, epoch=1, message_hub=hub, optim_wrapper=wrapper)


def test_finite_losses_pass_and_a_nan_term_stops_with_the_terms_and_fixes():
    hook = FiniteLossHook()
    hook.after_train_iter(fake_runner(), 0, outputs=dict(loss=torch.tensor(0.5), loss_cls=torch.tensor(0.2)))
    with pytest.raises(NonFiniteLossError) as err:
        hook.after_train_iter(fake_runner(last_ckpt="work/iter_6.pth"), 0,
                              outputs=dict(loss=torch.tensor(float("nan")), loss_cls=torch.tensor(0.2),
                                           loss_bbox=torch.tensor(float("inf"))))
    msg = str(err.value)
    assert "iteration 7 (epoch 2)" in msg and "loss=nan" in msg and "loss_bbox=inf" in msg and "loss_cls=0.2" in msg
    assert "work/iter_6.pth" in msg and "--amp off" in msg and "clip_grad" in msg


def test_a_run_of_skipped_fp16_steps_stops():
    """mmengine's AmpOptimWrapper needs an accelerator: a stub scaler halves its scale on every overflow."""
    class Scaler:
        def __init__(self):
            self.scale = 65536.0

        def get_scale(self):
            return self.scale

    scaler = Scaler()
    wrapper = types.SimpleNamespace(loss_scaler=scaler, should_update=lambda: True)
    hook = FiniteLossHook(max_skipped_steps=5)
    finite = dict(loss=torch.tensor(1.0))
    hook.after_train_iter(fake_runner(wrapper), 0, outputs=finite)
    for _ in range(4):  # a normal start: a few halvings, then steps go through
        scaler.scale /= 2
        hook.after_train_iter(fake_runner(wrapper), 0, outputs=finite)
    hook.after_train_iter(fake_runner(wrapper), 0, outputs=finite)  # a step that went through resets the count
    assert hook.skipped == 0
    accumulating = types.SimpleNamespace(loss_scaler=scaler, should_update=lambda: False)
    with pytest.raises(NonFiniteLossError, match="skipped 5 optimizer steps in a row"):
        for _ in range(5):
            scaler.scale /= 2
            hook.after_train_iter(fake_runner(accumulating), 0, outputs=finite)  # no step: not counted
            hook.after_train_iter(fake_runner(wrapper), 0, outputs=finite)
    with pytest.raises(ValueError, match="max_skipped_steps"):
        FiniteLossHook(max_skipped_steps=0)


def test_training_stops_before_checkpointing_poisoned_weights(tmp_path, photo_dir):
    """A real run (build_runner adds the hook): the loss turns NaN at iteration 3; iterations 1-2 are
    checkpointed, iteration 3 is not, and last_checkpoint still names iteration 2."""
    cfg = tiny_cfg(tmp_path / "run", photo_dir, epochs=2)
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", by_epoch=False, interval=1, max_keep_ckpts=-1)
    runner = build_runner(cfg)
    assert sum(isinstance(h, FiniteLossHook) for h in runner.hooks) == 1
    real = runner.model.forward

    def forward(*args, **kwargs):
        out = real(*args, **kwargs)
        if kwargs.get("mode") == "loss" and runner.iter == 2:
            out = {k: v * float("nan") for k, v in out.items()}
        return out
    runner.model.forward = forward
    with pytest.raises(NonFiniteLossError, match="iteration 3 "):
        runner.train()
    work = tmp_path / "run"
    assert (work / "iter_2.pth").is_file() and not (work / "iter_3.pth").exists()
    assert open(work / "last_checkpoint").read().strip().endswith("iter_2.pth")
