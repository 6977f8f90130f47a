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
