"""Opt-in torch.compile: compiled and eager agree; a compilation failure falls back to eager
with a warning instead of killing the run; model errors still raise."""
import copy
import pickle
import shutil

import pytest
import torch

from mae_backbone.compile import compile_module
from mae_backbone.models import create_model

TINY = dict(img_size=32, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32, decoder_depth=1,
            decoder_num_heads=2, norm_pix_loss=True)


def _loss_and_grads(model, imgs, noise):
    model.zero_grad(set_to_none=True)
    loss, pred, _ = model(imgs, mask_ratio=0.75, noise=noise)
    loss.backward()
    return loss.detach(), pred.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# inductor generates and compiles C++ for forward and backward: ~30 s on a 2-core Zen 5, over a minute on slower
# CPUs, hence slow; aot_eager checks the same traced graph in the default suite
@pytest.mark.parametrize("backend", [pytest.param("inductor", marks=pytest.mark.slow), "aot_eager"])
def test_compiled_mae_matches_eager(backend):
    if backend == "inductor" and not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("inductor on CPU needs a C++ compiler")
    """Same loss, prediction and gradients within float32 reassociation (inductor fuses and reorders sums:
    rtol / atol 1e-4 relative to values of order 1); aot_eager (the traced graph, no codegen) is exact to 1e-6."""
    torch.manual_seed(0)
    eager = create_model("mae_vit_base_patch16", **TINY)
    comp = create_model("mae_vit_base_patch16", **TINY)
    comp.load_state_dict(eager.state_dict())
    compile_module(comp, backend=backend)
    imgs, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 4)
    ref, out = _loss_and_grads(eager, imgs, noise), _loss_and_grads(comp, imgs, noise)
    assert comp.compiled is True
    tol = dict(rtol=1e-4, atol=1e-4) if backend == "inductor" else dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out[0], ref[0], **tol)
    torch.testing.assert_close(out[1], ref[1], **tol)
    assert out[2].keys() == ref[2].keys() and len(ref[2]) > 10
    for n in ref[2]:
        torch.testing.assert_close(out[2][n], ref[2][n], **tol, msg=n)


def _failing_backend(gm, example_inputs):
    raise RuntimeError("no C++ compiler on this machine")


def test_compile_failure_falls_back_to_eager_with_a_warning():
    torch.manual_seed(0)
    m = create_model("vit_tiny_patch16", img_size=32, depth=1)
    x = torch.randn(2, 3, 32, 32)
    ref = m(x)
    compile_module(m, backend=_failing_backend)
    assert m.compiled is None
    with pytest.warns(RuntimeWarning, match="running eagerly from now on.*no C\\+\\+ compiler"):
        out = m(x)
    assert m.compiled is False
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(m(x), ref, rtol=0, atol=0)  # stays eager, no second warning needed
    with pytest.raises(RuntimeError, match="already compiled"):
        compile_module(m)


def test_copies_of_a_compiled_module_use_their_own_weights():
    """mmengine's EMA hooks deepcopy the model: the copy must compute with the copy's parameters."""
    torch.manual_seed(0)
    m = compile_module(create_model("vit_tiny_patch16", img_size=32, depth=1), backend="eager")
    x = torch.randn(2, 3, 32, 32)
    ref = m(x)
    assert m.compiled is True
    for dup in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        with torch.no_grad():
            for p in dup.parameters():
                p.mul_(0.5)
        assert dup.forward.module is dup
        assert not torch.allclose(dup(x), ref)
        torch.testing.assert_close(m(x), ref, rtol=0, atol=0)  # the original is untouched


def test_compile_failure_raises_without_fallback():
    m = create_model("vit_tiny_patch16", img_size=32, depth=1)
    compile_module(m, backend=_failing_backend, fallback=False)
    with pytest.raises(Exception, match="no C\\+\\+ compiler"):
        m(torch.randn(1, 3, 32, 32))


def test_model_errors_are_not_swallowed():
    m = compile_module(create_model("vit_tiny_patch16", img_size=32, depth=1), backend="eager")
    with pytest.raises(Exception):
        m(torch.randn(1, 5, 32, 32))  # 5 channels into a 3-channel patch embedding
    assert m.compiled is not False


def test_mmengine_models_take_compile_from_the_config():
    pytest.importorskip("mmengine")
    from mae_backbone.engine.model import MAEPretrainer
    model = MAEPretrainer("mae_vit_base_patch16", compile=dict(backend="eager"), **TINY)
    assert model.model.compiled is None
    out = model(torch.randn(2, 3, 32, 32), mode="loss")
    assert model.model.compiled is True and torch.isfinite(out["loss"])
