"""Offline-friendly datasets: any ImageNet-style folder, and Fashion-MNIST idx files."""
from __future__ import annotations

import gzip
import logging
import os
import struct
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolder(Dataset):
    """Images under ``root``: ImageNet layout (``root/<class>/<img>``) or a flat/nested folder.

    Args:
        root: folder to scan recursively (sorted, so the order is reproducible).
        transform: callable PIL image -> tensor.
        on_error: ``raise`` (default) names the unreadable file; ``skip`` logs a warning
            once per file and returns the next readable image instead.
        mode: PIL mode the images are converted to (``RGB`` or ``L``).
        repeat: iterate the file list this many times per epoch (for tiny demo folders).
        labelled: True for classification: every image needs a label, from ``root/<class>/`` folders or from
            ``labels_file``; a flat folder without one is refused, naming the expected layout (instead of label -1
            on every image and a top-1 of 0). False / None: labels are optional (pretraining).
        labels_file: labels for a flat folder (the ImageNet validation tarball unpacks flat): ImageNet's
            ``LOC_val_solution.csv`` (``ImageId,PredictionString`` with the synset first) or a text file of
            ``<file name> <class index or synset>`` lines (``val.txt``). Synsets map to indices through
            ``classes`` (the sorted class folders of the training split), or through the file's own sorted set.
        classes: class names in index order (the training split's folders); class folders must be among them.
        num_classes: the model's class count: a split whose class folders (or labels) do not fit it is refused,
            since an evaluation split missing a class would shift every later index.

    A ``root`` holding ``train/`` and ``val/`` (the dataset root, not a split) is refused: scanned as one folder it
    would mix the splits (pretraining on train + val) or take the split names as two classes.

    Items are ``dict(inputs=image, label=class index or -1, path=str)``.
    """

    def __init__(self, root: str, transform: Optional[Callable] = None, on_error: str = "raise",
                 mode: str = "RGB", repeat: int = 1, extensions: Sequence[str] = IMG_EXTENSIONS,
                 labelled: Optional[bool] = None, labels_file: Optional[str] = None,
                 classes: Optional[Sequence[str]] = None, num_classes: Optional[int] = None):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        splits = [d for d in ("train", "val", "validation", "test") if (self.root / d).is_dir()]
        if len(splits) >= 2:
            raise ValueError(f"{self.root} holds the splits {splits}: it is the dataset root, not a split. Point root "
                             f"at {self.root / splits[0]} (training) or {self.root / splits[1]} (evaluation)")
        self.transform, self.on_error, self.mode, self.repeat = transform, on_error, mode, repeat
        self.samples, self.classes = self._scan(tuple(e.lower() for e in extensions))
        if not self.samples:
            raise FileNotFoundError(f"no images with extensions {tuple(extensions)} under {self.root}")
        if classes is not None:
            self._reindex(list(classes))
        if labels_file is not None:
            self._read_labels(Path(labels_file))
        unlabelled = [path for path, label in self.samples if label < 0]
        if labelled and unlabelled:
            raise ValueError(
                f"{self.root}: {len(unlabelled)} of {len(self.samples)} images have no label (e.g. {unlabelled[0]}). "
                f"A labelled dataset needs root/<class>/<image> folders (the ImageNet train layout), or a flat folder "
                f"with labels_file=... (ImageNet's LOC_val_solution.csv, or a val.txt of '<file> <class>' lines)")
        if num_classes is not None:
            top = max(label for _, label in self.samples)
            if (self.classes and len(self.classes) != num_classes) or top >= num_classes:
                found = f"{len(self.classes)} classes" if self.classes else f"labels up to {top}"
                raise ValueError(f"{self.root}: {found}, the model has {num_classes}: an evaluation split missing a "
                                 f"class shifts every later index. Pass classes= (the training split's folder names) "
                                 f"or fix num_classes")
        self._bad: set = set()

    def _reindex(self, classes: List[str]) -> None:
        """Index class folders by ``classes`` (the training split's), not by this split's own folders."""
        unknown = sorted(set(self.classes) - set(classes))
        if unknown:
            raise ValueError(f"{self.root}: class folders {unknown[:5]} are not among the {len(classes)} given classes")
        index = {c: i for i, c in enumerate(classes)}
        self.samples = [(p, index[self.classes[label]] if label >= 0 else -1) for p, label in self.samples]
        self.classes = classes

    def _read_labels(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"labels_file not found: {path}")
        names = {}
        with open(path) as f:
            lines = [ln.strip() for ln in f if ln.strip()]
        if lines and lines[0].replace(" ", "").lower().startswith("imageid,predictionstring"):
            for ln in lines[1:]:  # ILSVRC2012_val_00000001,n01751748 x y x y n01751748 ...
                image_id, pred = ln.split(",", 1)
                names[image_id] = pred.split()[0]
        else:
            for ln in lines:
                parts = ln.split()
                if len(parts) != 2:
                    raise ValueError(f"{path}: expected '<file name> <class>' lines, got {ln!r}")
                names[Path(parts[0]).stem] = parts[1]
        values = set(names.values())
        if all(v.isdigit() for v in values):
            to_index = {v: int(v) for v in values}
        else:
            classes = self.classes or sorted(values)
            missing = sorted(values - set(classes))
            if missing:
                raise ValueError(f"{path}: classes {missing[:5]} are not among the given classes")
            to_index = {c: i for i, c in enumerate(classes)}
            self.classes = list(classes)
        samples, unknown = [], []
        for p, label in self.samples:
            key = Path(p).stem
            if key in names:
                label = to_index[names[key]]
            elif label < 0:
                unknown.append(p)
            samples.append((p, label))
        if unknown:
            raise ValueError(f"{path} has no label for {len(unknown)} images under {self.root} (e.g. {unknown[0]})")
        self.samples = samples

    def _scan(self, extensions: Tuple[str, ...]) -> Tuple[List[Tuple[str, int]], List[str]]:
        subdirs = sorted(d.name for d in os.scandir(self.root) if d.is_dir())
        direct = [f for f in sorted(os.listdir(self.root)) if f.lower().endswith(extensions)]
        classes = subdirs if subdirs and not direct else []
        samples = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            dirnames.sort()
            rel = Path(dirpath).relative_to(self.root).parts
            label = classes.index(rel[0]) if classes and rel else -1
            samples += [(os.path.join(dirpath, f), label) for f in sorted(filenames)
                        if f.lower().endswith(extensions)]
        return samples, classes

    def __len__(self) -> int:
        return len(self.samples) * self.repeat

    def load(self, path: str) -> Image.Image:
        return open_image(path, self.mode)

    def raw_image(self, index: int) -> Image.Image:
        """Untransformed image ``index`` (PIL)."""
        return self.load(self.samples[index % len(self.samples)][0])

    def __getitem__(self, index: int) -> dict:
        n = len(self.samples)
        for offset in range(n):
            path, label = self.samples[(index + offset) % n]
            try:
                img = self.load(path)
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                if self.on_error == "raise":
                    raise OSError(f"cannot read image {path}: {e}. Remove or fix the file, or set "
                                  f"on_error='skip' in the dataset config to skip unreadable files.") from e
                if path not in self._bad:
                    self._bad.add(path)
                    logger.warning("skipping unreadable image %s: %s", path, e)
                continue
            out = self.transform(img) if self.transform else img
            return dict(inputs=out, label=label, path=path)
        raise OSError(f"no readable image under {self.root}")


def open_image(path: str, mode: str = "RGB") -> Image.Image:
    """Open one image fully (so truncated files fail here, not inside a transform)."""
    with Image.open(path) as img:
        img.load()
        return img.convert(mode)


def read_idx(path: str) -> np.ndarray:
    """Read an idx(.gz) array file (MNIST / Fashion-MNIST format)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown idx data type 0x{data[2]:02x}")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {int(np.prod(shape))} values for shape {shape}, found {arr.size}")
    return arr.reshape(shape)


class FashionMNIST(Dataset):
    """Fashion-MNIST from idx files (Debian ``dataset-fashion-mnist``: /usr/share/datasets/fashion-mnist).

    Items are ``dict(inputs=transform(PIL 'L' image), label=int)``.
    """

    CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
               "Bag", "Ankle boot")
    FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

    def __init__(self, root: str = "/usr/share/datasets/fashion-mnist", split: str = "train",
                 transform: Optional[Callable] = None, limit: Optional[int] = None):
        if split not in self.FILES:
            raise ValueError(f"split must be one of {tuple(self.FILES)}, got {split!r}")
        images_path, labels_path = (self._find(root, name) for name in self.FILES[split])
        self.images = read_idx(images_path)
        self.labels = read_idx(labels_path).astype(np.int64)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{images_path} has {len(self.images)} images but {labels_path} "
                             f"has {len(self.labels)} labels")
        if limit is not None:
            self.images, self.labels = self.images[:limit], self.labels[:limit]
        self.transform = transform

    @staticmethod
    def _find(root: str, name: str) -> str:
        for candidate in (os.path.join(root, name + ".gz"), os.path.join(root, name)):
            if os.path.isfile(candidate):
                return candidate
        raise FileNotFoundError(
            f"{name}(.gz) not found under {root}; install the Debian package "
            f"'dataset-fashion-mnist' (apt-get install dataset-fashion-mnist) or pass root=")

    def __len__(self) -> int:
        return len(self.labels)

    def raw_image(self, index: int) -> Image.Image:
        """Untransformed image ``index`` (PIL, mode 'L')."""
        return Image.fromarray(self.images[index], mode="L")

    def __getitem__(self, index: int) -> dict:
        img = self.raw_image(index)
        return dict(inputs=self.transform(img) if self.transform else img, label=int(self.labels[index]))
