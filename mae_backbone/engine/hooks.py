"""Training hooks: reconstruction pictures, the model spec and RNG state in checkpoints, the DDP replica check,
prediction pictures, autocast of model parts. The hooks that stop a run going wrong are in :mod:`.guards`."""
from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, images_to_batch
from ..data.datasets import ImageFolder, open_image
from ..models import create_model
from ..precision import autocast_modules
from ..visualize import reconstruction_grid
from .fsdp import full_state_dict, is_fsdp

logger = logging.getLogger(__name__)


def bare_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside its wrappers, each holding it as ``.module``: DDP / FSDP (mmengine's model wrappers) and
    test-time augmentation (mmengine's ``BaseTTAModel``, ``tools/test.py --tta``); or the model itself."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def unwrap_mae(runner):
    model = bare_model(runner.model)
    return getattr(model, "model", model)


def _gathered_copy(runner):
    """A plain (unsharded) copy of an FSDP-trained MAE with its current weights, on rank 0; collective."""
    sd = full_state_dict(runner.model)
    if sd is None:
        return None
    trainer = runner.model.module  # MAEPretrainer
    mae = create_model(trainer.arch, **trainer.model_kwargs)
    mae.load_state_dict({k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")})
    return mae.eval()


@HOOKS.register_module()
class ReconstructionHook(Hook):
    """Every ``interval`` epochs (and after the last), write ``<work_dir>/reconstructions/epoch_N.png``.

    Args:
        images: image paths or a folder; default: the first ``num_images`` training images.
        num_images: how many columns.
        mask_ratio: default the model's.
        seed: seeds the masks, so pictures of different epochs compare the same patches.
    """
    priority = "NORMAL"

    def __init__(self, interval: int = 1, images: Optional[Sequence[str]] = None, num_images: int = 6,
                 mask_ratio: Optional[float] = None, seed: int = 0, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.interval, self.images, self.num_images = interval, images, num_images
        self.mask_ratio, self.seed, self.mean, self.std = mask_ratio, seed, mean, std
        self.last_path: Optional[Path] = None

    def _images(self, runner, mode: str):
        if isinstance(self.images, str):
            return [open_image(p, mode) for p, _ in ImageFolder(self.images).samples[: self.num_images]]
        if self.images:
            return [open_image(p, mode) for p in list(self.images)[: self.num_images]]
        ds = runner.train_dataloader.dataset
        return [ds.raw_image(i) for i in range(min(self.num_images, len(ds)))]

    def _batch(self, runner, mae) -> torch.Tensor:
        """Centre views of the images at the model's size, normalised: (B, C, H, W)."""
        images = self._images(runner, "L" if mae.in_chans == 1 else "RGB")
        return images_to_batch(images, mae.img_size[0], self.mean, self.std)

    def write(self, runner, epoch: int) -> Optional[Path]:
        """Write the picture for a finished ``epoch`` (1-based); rank 0 draws (under FSDP every rank first gathers
        the whole weights with it, into a plain copy of the model on rank 0's CPU)."""
        mae = _gathered_copy(runner) if is_fsdp(runner.model) else None
        if not is_main_process():
            return None
        return self._draw(runner, epoch, mae if mae is not None else unwrap_mae(runner))

    def _draw(self, runner, epoch: int, mae) -> Path:
        imgs = self._batch(runner, mae).to(next(mae.parameters()).device)
        gh, gw = mae.patch_embed.grid_size(imgs)
        g = torch.Generator(device="cpu").manual_seed(self.seed)  # own generator: training RNG untouched
        noise = torch.rand(imgs.shape[0], gh * gw, generator=g).to(imgs.device)
        pic = reconstruction_grid(mae, imgs, self.mask_ratio, noise, self.mean, self.std)
        out = Path(runner.work_dir) / "reconstructions" / f"epoch_{epoch}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        pic.save(out)
        self.last_path = out
        runner.logger.info(f"reconstruction picture written to {out}")
        return out

    def after_train_epoch(self, runner) -> None:
        if self.every_n_epochs(runner, self.interval) or self.is_last_train_epoch(runner):
            self.write(runner, runner.epoch + 1)  # runner.epoch counts finished epochs after this hook


@HOOKS.register_module()
class ModelSpecHook(Hook):
    """Store the model's plain-data spec in ``checkpoint['meta']['model_spec']``.

    Tools rebuild the model from it (``mae_backbone.inference``) without executing the config
    text mmengine also stores, which is Python and would run arbitrary code from the file.
    """
    priority = "LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = bare_model(runner.model)
        if callable(getattr(model, "model_spec", None)):
            checkpoint.setdefault("meta", {})["model_spec"] = model.model_spec()


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save every rank's torch / numpy / python RNG state in epoch checkpoints; restore on resume.

    With it (and :func:`seed_worker`), masks, drop path and augmentations after a resume are
    exactly those of the uninterrupted run. mmengine saves checkpoints on rank 0 only, so the
    states are gathered at the end of each epoch on all ranks (before ``CheckpointHook``, which
    runs at VERY_LOW priority) and written by rank 0. Exactness holds for the epoch-end
    checkpoints of epoch-based training (mmengine restarts an interrupted epoch). Restoring
    happens in ``before_train``, after mmengine's own resume logic, which may reseed; only
    ``resume`` restores, ``load_from`` does not.
    """
    priority = "LOW"

    def __init__(self):
        self._pending = None
        self._gathered = None  # (epoch, [state per rank])

    @staticmethod
    def capture() -> dict:
        """This process's RNG states (torch, numpy as a tensor, python, cuda)."""
        name, keys, pos, has_gauss, cached = np.random.get_state()
        return dict(torch=torch.get_rng_state(), python=random.getstate(),
                    numpy=(name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
                    cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])

    @staticmethod
    def restore(state: dict) -> None:
        # mmengine resumes with map_location=<device>: RNG tensors may arrive on the GPU
        torch.set_rng_state(state["torch"].cpu())
        random.setstate(state["python"])
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])

    def after_train_epoch(self, runner) -> None:
        states = [self.capture()]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            states = [None] * dist.get_world_size()
            dist.all_gather_object(states, self.capture())
        self._gathered = (runner.epoch, states)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # rank 0 only: use the states gathered at the end of this epoch when saving there
        if self._gathered is not None and self._gathered[0] == runner.epoch:
            checkpoint["rng_state"] = self._gathered[1]
        else:
            checkpoint["rng_state"] = [self.capture()]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, "_resume", False):
            return  # load_from starts a new run: its randomness is its own
        states = checkpoint.get("rng_state")
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if not states:
            runner.logger.warning("checkpoint has no RNG state: the resumed run will not replay "
                                  "the uninterrupted run's randomness exactly")
        elif len(states) != world:
            runner.logger.warning(f"checkpoint holds RNG states of {len(states)} ranks, this run has {world}: "
                                  f"keeping fresh seeds (randomness will differ from the original run)")
        else:
            self._pending = states[dist.get_rank() if world > 1 else 0]

    def before_train(self, runner) -> None:
        if self._pending is not None:
            self.restore(self._pending)
            self._pending = None
            runner.logger.info("restored RNG state from the resumed checkpoint")


@HOOKS.register_module()
class ReplicaCheckHook(Hook):
    """Verify every ``interval`` iterations (and at the end) that all DDP ranks hold bit-identical weights.

    Each rank hashes the raw bytes of every parameter and buffer; the digests are gathered
    and compared. A divergent replica (e.g. an unsynchronised buffer) raises instead of
    silently training different models.
    """
    priority = "LOW"

    def __init__(self, interval: int = 1000):
        self.interval = interval
        self.checks = 0

    @staticmethod
    def tensor_digests(model) -> dict:
        """name -> sha256 of the raw bytes, for every parameter and buffer."""
        return {name: hashlib.sha256(t.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
                for name, t in list(model.named_parameters()) + list(model.named_buffers())}

    def before_train(self, runner) -> None:
        if is_fsdp(runner.model):
            raise ValueError("ReplicaCheckHook compares whole replicas (DDP); under FSDP each rank holds a different "
                             "shard of the weights: remove it from custom_hooks")

    def check(self, runner, done_iters: int) -> None:
        """Compare all ranks' weights after ``done_iters`` iterations; raise on any difference."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        model = bare_model(runner.model)
        mine = self.tensor_digests(model)
        overall = hashlib.sha256("".join(mine.values()).encode()).hexdigest()
        digests = [None] * dist.get_world_size()
        dist.all_gather_object(digests, overall)
        bad = [r for r, d in enumerate(digests) if d != digests[0]]
        if bad:
            per_rank = [None] * dist.get_world_size()
            dist.all_gather_object(per_rank, mine)
            names = sorted({n for r in bad for n, d in per_rank[r].items() if per_rank[0].get(n) != d})
            raise RuntimeError(f"DDP replicas diverged after iteration {done_iters}: ranks {bad} differ from "
                               f"rank 0 in {len(names)} tensors: {names[:10]}")
        self.checks += 1
        runner.logger.info(f"replica check passed after iteration {done_iters}: weights bit-identical on "
                           f"{len(digests)} ranks (sha256 {overall[:16]})")

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.every_n_train_iters(runner, self.interval):
            self.check(runner, runner.iter + 1)

    def after_train(self, runner) -> None:
        self.check(runner, runner.iter)


@HOOKS.register_module()
class PredictionPNGHook(Hook):
    """Test-time drawing: ``<out_dir>/<image stem>.png`` with ground truth and prediction side by side.

    Works with any mm* visualizer whose ``add_datasample(name, image, data_sample, draw_gt=...,
    out_file=...)`` draws its task's predictions (mmdet boxes + masks, mmseg colour-coded maps).
    ``tools/test.py --show-dir DIR`` adds it.
    """

    def __init__(self, out_dir: str, draw_gt: bool = True, **draw_kwargs):
        self.out_dir = Path(out_dir)
        self.draw_gt = draw_gt
        self.draw_kwargs = draw_kwargs
        self.written = []

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        from PIL import Image
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for sample in outputs or ():
            path = Path(sample.img_path)
            img = np.asarray(Image.open(path).convert("RGB"))
            out = self.out_dir / (path.stem + ".png")
            runner.visualizer.add_datasample(path.stem, img, data_sample=sample, draw_gt=self.draw_gt,
                                             show=False, out_file=str(out), **self.draw_kwargs)
            self.written.append(out)


@HOOKS.register_module()
class AutocastModulesHook(Hook):
    """Runs parts of the model in mixed precision, train, val and test: ``modules`` maps submodule paths to a
    precision (``dict(backbone='bfloat16', neck='bfloat16')``), applied before the run by
    :func:`mae_backbone.precision.autocast_modules` (the device's precision rule, float32 outputs).
    ``build_runner`` adds it for a config's top-level ``autocast_modules`` (which ``--amp`` rewrites); a config run
    by another launcher can list it in ``custom_hooks``."""
    priority = "VERY_HIGH"

    def __init__(self, modules: dict):
        self.modules = dict(modules)

    def before_run(self, runner) -> None:
        autocast_modules(bare_model(runner.model), self.modules)
