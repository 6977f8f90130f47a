"""Image features from a pretrained encoder, and weighted k-NN evaluation.

``build_encoder(ckpt)`` makes the :class:`~mae_backbone.models.VisionTransformer` a checkpoint holds (an official
MAE file by name or URL, an encoder-only file, a full MAE, one of our runs); ``extract(encoder, images)`` turns a
folder, a list of files or a dataset into a (N, D x layers) tensor; ``knn_classify`` is DINO's weighted k-NN
(cosine similarity, the k nearest training features vote with weight exp(similarity / T)), the cheapest way to
judge a pretrained backbone without training anything.

The feature of one image at block ``l``: the tokens after block ``l`` through the encoder's final LayerNorm (as
MAE's linear probe reads the last block), then ``pool='cls'`` (the class token, MAE's linear-probing feature) or
``pool='avg'`` (the mean of the patch tokens). Several layers are concatenated in the order given.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from .checkpoint import convert_state_dict, load_checkpoint, read_checkpoint
from .data.datasets import ImageFolder, open_image
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from .inference import infer_encoder_kwargs, saved_spec
from .files import atomic_write
from .models import VisionTransformer, resolve_arch
from .precision import autocast

logger = logging.getLogger(__name__)
POOLS = ("cls", "avg")


def build_encoder(src, img_size: Optional[int] = None) -> Tuple[VisionTransformer, Tuple, Tuple]:
    """(encoder in eval mode, pixel mean, pixel std in 0-1 units) from a checkpoint path / name / URL / dict.

    The shape comes from our runs' saved model spec (its preset, then the overrides the encoder takes), else from
    the tensors (head count from the presets, else 64-d heads). The load is strict on the encoder; a decoder, mask
    token or classification head is left out. A fine-tuned classifier with global pooling (``fc_norm``, no final
    ``norm``: the official mae_finetuned_* files, our fine-tuning runs) keeps its ``fc_norm`` as the encoder's
    ``fc_norm``: ``pool='avg'`` then gives the classifier's own pooled feature, fc_norm(mean of patch tokens)."""
    import inspect
    ckpt = read_checkpoint(src) if not isinstance(src, dict) else src
    arch, kwargs, norm = saved_spec(ckpt)
    sd, _ = convert_state_dict(ckpt, "auto")
    try:
        preset = resolve_arch(arch) if arch else None
    except ValueError:
        preset = None
    kw = infer_encoder_kwargs(sd, warn=preset is None and "num_heads" not in (kwargs or {}))
    if preset is not None:  # our run's preset: its head count (weights cannot tell)
        kw["num_heads"] = preset.num_heads
    accepted = set(inspect.signature(VisionTransformer.__init__).parameters) - {"self"}
    kw.update({k: v for k, v in (kwargs or {}).items() if k in accepted})  # the run's overrides the encoder takes
    dim = kw["embed_dim"]
    if img_size is not None:
        kw["img_size"] = img_size
    encoder = VisionTransformer(**kw)
    classifier = "fc_norm.weight" in sd and "norm.weight" not in sd
    if classifier:
        encoder.norm = torch.nn.Identity()
        encoder.fc_norm = torch.nn.LayerNorm(dim, eps=1e-6)
    # the encoder's contract, and a classifier's head (features are taken before it)
    report = load_checkpoint(encoder, ckpt, strict=True, allowed_unexpected=encoder.expected_unused_keys() +
                             [r"^head\."] + ([] if classifier else [r"^fc_norm\."]))
    logger.info("encoder: %s", report)
    mean, std = norm or (IMAGENET_MEAN, IMAGENET_STD)
    return encoder.eval(), tuple(mean), tuple(std)


class ImageList(Dataset):
    """Image files (and optional labels) from a list: ``paths`` or a text file of ``path [label]`` lines."""

    def __init__(self, items: Union[str, Sequence[str]], transform=None, mode: str = "RGB"):
        if isinstance(items, (str, os.PathLike)):
            base = Path(items).parent
            lines = [ln.split() for ln in Path(items).read_text().splitlines() if ln.strip()]
            self.samples = [(str(base / ln[0]) if not os.path.isabs(ln[0]) else ln[0], int(ln[1]) if len(ln) > 1
                            else -1) for ln in lines]
        else:
            self.samples = [(str(p), -1) for p in items]
        missing = [p for p, _ in self.samples if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"{len(missing)} listed images do not exist, e.g. {missing[0]}")
        self.transform, self.mode = transform, mode

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        path, label = self.samples[i]
        img = open_image(path, self.mode)
        return dict(inputs=self.transform(img) if self.transform else img, label=label, path=path)


def image_dataset(src: Union[str, Sequence[str]], img_size: int, in_chans: int = 3, labelled: bool = False,
                  classes: Optional[Sequence[str]] = None) -> Dataset:
    """A folder (ImageNet layout or flat), a list file or a list of paths, with the evaluation transform."""
    transform, mode = eval_transform(img_size), ("L" if in_chans == 1 else "RGB")
    if isinstance(src, (str, os.PathLike)) and os.path.isdir(src):
        return ImageFolder(str(src), transform=transform, mode=mode, labelled=labelled, classes=classes)
    ds = ImageList(src, transform=transform, mode=mode)
    if labelled and any(label < 0 for _, label in ds.samples):
        raise ValueError("a labelled list needs '<path> <label>' lines")
    return ds


def _batch_images(batch: List[dict], mean, std) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    x = torch.stack([torch.as_tensor(b["inputs"]) for b in batch])
    if x.dtype == torch.uint8:
        x = x.float() / 255
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    labels = torch.tensor([int(b.get("label", -1)) for b in batch])
    return (x - m) / s, labels, [str(b.get("path", "")) for b in batch]


@torch.no_grad()
def embed(encoder: VisionTransformer, x: torch.Tensor, pool: str = "avg", layers: Sequence[int] = (-1,)) -> torch.Tensor:
    """Normalised images (B, C, H, W) -> features (B, D x len(layers)), see the module docstring."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if pool == "cls" and not encoder.use_cls_token:
        raise ValueError("pool='cls' needs an encoder with a class token; use pool='avg'")
    if pool == "cls" and getattr(encoder, "fc_norm", None) is not None:
        raise ValueError("pool='cls' of a globally pooled classifier: its class token was never trained through a "
                         "final norm; use pool='avg' (the classifier's own feature)")
    wanted = encoder.resolve_indices(list(layers))
    tokens, cls, grid = encoder.embed_patches(x)
    h = torch.cat([cls, tokens], dim=1) if cls is not None else tokens
    out = {}
    for i in range(max(wanted) + 1):
        h = encoder.run_blocks(h, [encoder.blocks[i]], grid=grid)
        if i in wanted:
            y = encoder.norm(h)
            if pool == "cls":
                out[i] = y[:, 0]
            else:
                out[i] = y[:, encoder.num_prefix_tokens:].mean(dim=1)
                if getattr(encoder, "fc_norm", None) is not None:  # a fine-tuned classifier's pooled feature
                    out[i] = encoder.fc_norm(out[i])
    return torch.cat([out[i] for i in wanted], dim=1).float()


def extract(encoder: VisionTransformer, images: Union[Dataset, str, Sequence[str]], pool: str = "avg",
            layers: Sequence[int] = (-1,), batch_size: int = 64, device: Optional[Union[str, torch.device]] = None,
            precision: str = "bf16", mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
            img_size: Optional[int] = None, num_workers: int = 0, chunk_dir: Optional[Union[str, Path]] = None,
            chunk_size: int = 8192, progress: bool = True) -> Dict[str, object]:
    """Features of ``images`` (a dataset yielding ``dict(inputs, label[, path])``, a folder, a list file or paths).

    Returns ``dict(features=(N, D x layers) float32, labels=(N,) (-1 where none), paths=[...])``. ``precision``
    'bf16' runs autocast where the device has native bf16 (fp32 elsewhere); 'fp32' never autocasts. With
    ``chunk_dir``, every ``chunk_size`` images are saved as they finish and a rerun with the same settings reuses
    them (a large folder survives an interruption)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not isinstance(images, Dataset):
        images = image_dataset(images, img_size or encoder.img_size[0], encoder.patch_embed.in_chans)
    encoder = encoder.to(device).eval()
    n = len(images)
    settings = dict(n=n, pool=pool, layers=list(layers), mean=list(mean), std=list(std), chunk_size=chunk_size,
                    weights=_fingerprint(encoder), precision=precision, images=_images_fingerprint(images),
                    img_size=img_size, in_chans=encoder.patch_embed.in_chans)
    chunk_dir = Path(chunk_dir) if chunk_dir is not None else None
    if chunk_dir is not None:
        chunk_dir.mkdir(parents=True, exist_ok=True)
        meta = chunk_dir / "settings.json"
        if meta.exists() and json.loads(meta.read_text()) != settings:
            raise ValueError(f"{chunk_dir} holds chunks made with other settings or weights; use another directory "
                             f"or delete it")
        meta.write_text(json.dumps(settings))
    bar = _bar(n, progress)
    feats, labels, paths = [], [], []
    for start in range(0, n, chunk_size):
        part = chunk_dir / f"chunk_{start // chunk_size:06d}.pt" if chunk_dir is not None else None
        if part is not None and part.exists():
            saved = torch.load(part, map_location="cpu", weights_only=True)
            f, y, p = saved["features"], saved["labels"], saved["paths"]
        else:
            f, y, p = _run(encoder, Subset(images, range(start, min(n, start + chunk_size))), pool, layers,
                           batch_size, device, precision, mean, std, num_workers)
            if part is not None:
                atomic_write(part, lambda fh: torch.save(dict(features=f, labels=y, paths=p), fh))
        feats.append(f)
        labels.append(y)
        paths += p
        if bar is not None:
            bar.update(len(y))
    if bar is not None:
        bar.close()
    return dict(features=torch.cat(feats), labels=torch.cat(labels), paths=paths, pool=pool, layers=list(layers))


def _run(encoder, subset, pool, layers, batch_size, device, precision, mean, std, num_workers):
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=lambda b: _batch_images(b, mean, std))
    feats, labels, paths = [], [], []
    for x, y, p in loader:
        with autocast("bf16" if precision == "bf16" else "fp32", device.type):
            feats.append(embed(encoder, x.to(device), pool, layers).cpu())
        labels.append(y)
        paths += p
    return torch.cat(feats), torch.cat(labels), paths


def _images_fingerprint(images: Dataset) -> str:
    """Which images, and how they are transformed (paths where the dataset lists them)."""
    h = hashlib.sha256()
    samples = getattr(images, "samples", None)
    if samples:
        for path, label in samples:
            h.update(f"{path}\t{label}\n".encode())
    else:
        h.update(f"{type(images).__name__}:{len(images)}:{getattr(images, 'root', '')}".encode())
    h.update(repr(getattr(images, "transform", None)).encode())
    return h.hexdigest()[:16]


def _fingerprint(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().numpy().tobytes()[:4096])
        h.update(str(tuple(t.shape)).encode())
    return h.hexdigest()[:16]


def _bar(n: int, progress: bool):
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=n, unit="img", desc="features", leave=False)


@torch.no_grad()
def knn_classify(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, k: int = 20, temperature: float = 0.07,
                 num_classes: Optional[int] = None, batch_size: int = 1024) -> Dict[str, float]:
    """DINO's weighted k-NN (eval_knn.py): L2-normalised features, the k most cosine-similar training features
    vote for their class with weight exp(similarity / temperature). Returns top-1 / top-5 accuracy in percent."""
    if (train_labels < 0).any() or (test_labels < 0).any():
        raise ValueError("k-NN needs labelled train and test features (label -1 found): use class folders")
    if k < 1 or temperature <= 0:
        raise ValueError(f"k must be >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    train = F.normalize(train_features.float(), dim=1)
    test = F.normalize(test_features.float(), dim=1)
    c = int(num_classes or int(torch.cat([train_labels, test_labels]).max()) + 1)
    k = min(k, len(train))
    top1 = top5 = 0
    for start in range(0, len(test), batch_size):
        sim = test[start:start + batch_size] @ train.T
        w, idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(sim), c).scatter_add_(1, train_labels[idx], (w / temperature).exp())
        pred = votes.topk(min(5, c), dim=1).indices
        y = test_labels[start:start + batch_size]
        top1 += (pred[:, 0] == y).sum().item()
        top5 += (pred == y[:, None]).any(dim=1).sum().item()
    return dict(top1=100.0 * top1 / len(test), top5=100.0 * top5 / len(test), k=k, temperature=temperature)
