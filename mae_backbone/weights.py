"""Official MAE weights by name, checkpoints by URL: downloaded once into a cache, verified, then read like a file.

``resolve_checkpoint(src)`` turns a registry name (``mae_pretrain_vit_base``), an ``http(s)://`` / ``file://`` URL
or a local path into a local file. Everything that reads checkpoints goes through it
(:func:`mae_backbone.checkpoint.read_checkpoint`, hence ``load_checkpoint``, ``pretrained=`` of the models and of
``MAEClassifier`` / ``MAEPretrainer``, ``MAEViT``'s ``init_cfg``, and the tools).

The cache is ``$MAE_BACKBONE_CACHE``, else ``$XDG_CACHE_HOME/mae_backbone``, else ``~/.cache/mae_backbone``. A
download counts only when its length equals the server's ``Content-Length``, its md5 starts with the prefix the
official README / FINETUNE.md publish (where they publish one: six hex digits; none is invented for the others),
and ``torch.load(weights_only=True)`` reads it. It is written to a temporary file and renamed into the cache only
then, so an interrupted, truncated or unreadable download leaves nothing behind.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import http.client
import logging
import os
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, Optional, Union

import torch

logger = logging.getLogger(__name__)

URL_SCHEMES = ("http://", "https://", "file://")
_BASE = "https://dl.fbaipublicfiles.com/mae"


@dataclasses.dataclass(frozen=True)
class OfficialWeights:
    """One file the MAE authors publish."""
    url: str
    arch: str                  # the preset it loads into
    contents: str              # what the file holds
    source: str                # where the URL (and md5 prefix) is published
    md5_prefix: Optional[str] = None


_README = "facebookresearch/mae README.md (pre-trained checkpoints table)"
_FINETUNE = "facebookresearch/mae FINETUNE.md (fine-tuned checkpoints table)"
_VISUALIZE = ("facebookresearch/mae demo/mae_visualize.ipynb (large, large_ganloss); base and huge sit in the same "
              "folder (the checkpoints HF transformers' convert_vit_mae_to_pytorch.py converts)")
WEIGHTS: Dict[str, OfficialWeights] = {
    "mae_pretrain_vit_base": OfficialWeights(f"{_BASE}/pretrain/mae_pretrain_vit_base.pth", "vit_base_patch16",
                                             "encoder, 1600-epoch pretraining with normalised-pixel targets",
                                             _README, "8cad7c"),
    "mae_pretrain_vit_large": OfficialWeights(f"{_BASE}/pretrain/mae_pretrain_vit_large.pth", "vit_large_patch16",
                                              "encoder, 1600-epoch pretraining with normalised-pixel targets",
                                              _README, "b8b06e"),
    "mae_pretrain_vit_huge": OfficialWeights(f"{_BASE}/pretrain/mae_pretrain_vit_huge.pth", "vit_huge_patch14",
                                             "encoder, 1600-epoch pretraining with normalised-pixel targets",
                                             _README, "9bdbb0"),
    "mae_visualize_vit_base": OfficialWeights(f"{_BASE}/visualize/mae_visualize_vit_base.pth", "mae_vit_base_patch16",
                                              "encoder + decoder, pixel (unnormalised) targets: for reconstructions",
                                              _VISUALIZE),
    "mae_visualize_vit_large": OfficialWeights(f"{_BASE}/visualize/mae_visualize_vit_large.pth",
                                               "mae_vit_large_patch16",
                                               "encoder + decoder, pixel (unnormalised) targets: for reconstructions",
                                               _VISUALIZE),
    "mae_visualize_vit_large_ganloss": OfficialWeights(
        f"{_BASE}/visualize/mae_visualize_vit_large_ganloss.pth", "mae_vit_large_patch16",
        "encoder + decoder, pixel targets plus a GAN loss (sharper reconstructions)", _VISUALIZE),
    "mae_visualize_vit_huge": OfficialWeights(f"{_BASE}/visualize/mae_visualize_vit_huge.pth", "mae_vit_huge_patch14",
                                              "encoder + decoder, pixel (unnormalised) targets: for reconstructions",
                                              _VISUALIZE),
    "mae_finetuned_vit_base": OfficialWeights(f"{_BASE}/finetune/mae_finetuned_vit_base.pth", "vit_base_patch16",
                                              "ImageNet-1k fine-tuned classifier (83.664 top-1)", _FINETUNE, "1b25e9"),
    "mae_finetuned_vit_large": OfficialWeights(f"{_BASE}/finetune/mae_finetuned_vit_large.pth", "vit_large_patch16",
                                               "ImageNet-1k fine-tuned classifier (85.952 top-1)", _FINETUNE, "51f550"),
    "mae_finetuned_vit_huge": OfficialWeights(f"{_BASE}/finetune/mae_finetuned_vit_huge.pth", "vit_huge_patch14",
                                              "ImageNet-1k fine-tuned classifier (86.928 top-1)", _FINETUNE, "2541f2"),
}

# pretrained=True on a preset: the official pretraining weights of that size (the full MAE: the files with a decoder)
PRESET_WEIGHTS = {
    "vit_base_patch16": "mae_pretrain_vit_base", "vit_large_patch16": "mae_pretrain_vit_large",
    "vit_huge_patch14": "mae_pretrain_vit_huge", "mae_vit_base_patch16": "mae_visualize_vit_base",
    "mae_vit_large_patch16": "mae_visualize_vit_large", "mae_vit_huge_patch14": "mae_visualize_vit_huge",
}


class DownloadError(RuntimeError):
    """A download that did not produce a verified checkpoint (nothing was cached)."""


def cache_dir() -> Path:
    root = os.environ.get("MAE_BACKBONE_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "mae_backbone"


def is_url(src) -> bool:
    return isinstance(src, str) and src.startswith(URL_SCHEMES)


def cached_name(url: str) -> str:
    """The cache file name of ``url``: the official files keep their names; other URLs get a short hash prefix."""
    name = Path(urllib.parse.urlparse(url).path).name or "checkpoint.pth"
    if any(w.url == url for w in WEIGHTS.values()):
        return name
    return f"{hashlib.sha256(url.encode()).hexdigest()[:8]}-{name}"


def download(url: str, md5_prefix: Optional[str] = None, dest_dir: Optional[Path] = None,
             progress: bool = True, wait_s: float = 7200.0) -> Path:
    """The verified local copy of ``url`` (downloaded on first use). See the module docstring for the checks.

    Processes sharing the cache (DDP ranks, several jobs) download a file once: the first takes a lock file, the
    others wait for the result (a lock whose process is gone on this host is taken over)."""
    dest_dir = Path(dest_dir) if dest_dir is not None else cache_dir()
    target = dest_dir / cached_name(url)
    if target.is_file():
        return target
    dest_dir.mkdir(parents=True, exist_ok=True)
    lock = target.with_name(f".{target.name}.lock")
    deadline = time.monotonic() + wait_s
    while not _take_lock(lock):
        if target.is_file():
            return target
        if time.monotonic() > deadline:
            raise DownloadError(f"waited {wait_s:.0f} s for another process downloading {url} (lock {lock}); "
                                f"remove the lock if no download is running")
        time.sleep(1.0)
    try:
        if target.is_file():  # finished by another process while this one waited for the lock
            return target
        return _fetch(url, md5_prefix, target, progress)
    finally:
        lock.unlink(missing_ok=True)


def _take_lock(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            host, pid = lock.read_text().split(":")
            if host == socket.gethostname() and not _alive(int(pid)):
                lock.unlink(missing_ok=True)  # its process is gone: take it over
        except (OSError, ValueError):
            pass
        return False
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{socket.gethostname()}:{os.getpid()}")
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fetch(url: str, md5_prefix: Optional[str], target: Path, progress: bool) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".part{target.suffix}", dir=target.parent)
    f = os.fdopen(fd, "wb")  # owns the descriptor from here on
    md5 = hashlib.md5()
    received = 0
    try:
        with f:
            try:
                response = urllib.request.urlopen(url, timeout=60)
            except (urllib.error.URLError, OSError) as e:
                raise DownloadError(f"cannot download {url}: {e}. Without network, download it elsewhere and pass "
                                    f"the local path, or copy it to {target}") from e
            with response:
                expected = response.headers.get("Content-Length")
                expected = int(expected) if expected is not None else None
                bar = _progress(expected, target.name) if progress else None
                while True:
                    try:
                        chunk = response.read(1 << 20)
                    except (http.client.HTTPException, OSError) as e:  # the connection dropped mid-file
                        raise DownloadError(f"download of {url} broke off after {received} bytes "
                                            f"({type(e).__name__}); nothing cached, try again") from None
                    if not chunk:
                        break
                    f.write(chunk)
                    md5.update(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
                if bar is not None:
                    bar.close()
        if expected is not None and received != expected:
            raise DownloadError(f"download of {url} is incomplete: {received} of {expected} bytes; nothing cached, "
                                f"try again")
        if md5_prefix and not md5.hexdigest().startswith(md5_prefix):
            raise DownloadError(f"{url}: md5 {md5.hexdigest()[:12]}... does not start with the published {md5_prefix}; "
                                f"nothing cached")
        from .checkpoint import read_checkpoint  # the reader every load uses (safetensors, mmengine runs)
        try:
            read_checkpoint(tmp)
        except Exception as e:  # noqa: BLE001  (any unreadable file is refused the same way)
            raise DownloadError(f"{url} is not a loadable checkpoint ({type(e).__name__}: {str(e)[:200]}); nothing "
                                f"cached") from None
        os.replace(tmp, target)
        logger.info("downloaded %s (%d bytes) to %s", url, received, target)
        return target
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _progress(total: Optional[int], name: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {name}", leave=False)


def resolve_checkpoint(src: Union[str, os.PathLike]) -> Path:
    """A registry name, a URL or a path -> a local file (names and URLs downloaded once into :func:`cache_dir`)."""
    if isinstance(src, str) and src in WEIGHTS:
        w = WEIGHTS[src]
        return download(w.url, w.md5_prefix)
    if is_url(src):
        known = [w for w in WEIGHTS.values() if w.url == src]
        return download(src, known[0].md5_prefix if known else None)
    path = Path(src)
    if not path.is_file():
        close = difflib.get_close_matches(Path(str(src)).stem, list(WEIGHTS), n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise FileNotFoundError(f"checkpoint not found: {src}{hint}. A checkpoint is a file path, an http(s):// or "
                                f"file:// URL, or one of the official names: {', '.join(WEIGHTS)}")
    return path


def preset_weights(preset: str, pretrained: Union[bool, str]) -> str:
    """What ``pretrained=`` means for ``preset``: True -> the official weights of that size; a str passes through."""
    if pretrained is True:
        if preset not in PRESET_WEIGHTS:
            raise ValueError(f"no official MAE weights for {preset}: the authors publish "
                             f"{', '.join(sorted(PRESET_WEIGHTS))}; pass pretrained=PATH / URL for your own")
        return PRESET_WEIGHTS[preset]
    return str(pretrained)


def load_pretrained(model: torch.nn.Module, preset: str, pretrained: Union[bool, str]) -> None:
    """Load ``pretrained`` into a preset model strictly and log the report (the models' factory calls this)."""
    from .checkpoint import load_checkpoint
    src = preset_weights(preset, pretrained)
    report = load_checkpoint(model, src, strict=True)
    logger.info("%s <- %s: %s", preset, src, report)


def _register() -> None:
    """The layers below call back through these: checkpoint sources (names, URLs) and presets' ``pretrained=``."""
    from . import checkpoint
    from .models import factory
    checkpoint.register_source_resolver(resolve_checkpoint)
    factory.register_pretrained_loader(load_pretrained)


_register()
