"""The benchmark suite's plumbing: detection-backbone rows, the ratio table, the docs section writer."""
import pytest

pytest.importorskip("mmdet")

from downstream.bench_suite import TARGETS, to_markdown, write_section  # noqa: E402


def test_detection_backbone_rows_windowed_global_checkpointed():
    """At 128² (an 8 x 8 grid) the ViTDet config's ViT-B: windows pad the grid to 14 x 14 per window, so the
    windowed model does more FLOPs than the all-global one here (the ratio is a measurement, not an assumption);
    checkpointing holds far fewer activations; with repeats=0 the memory pass is the timing."""
    from downstream.benchmark import detection_backbones
    rows = {r["variant"]: r for r in detection_backbones(size=128, warmup=0, repeats=0)}
    win, glob, ckpt = rows["vitdet"], rows["vitdet-global"], rows["vitdet-ckpt"]
    assert glob["speedup_vs_global"] == glob["flop_ratio_vs_global"] == glob["activation_vs_global"] == 1.0
    assert win["flops"] > glob["flops"]  # 14 x 14 windows over an 8 x 8 grid: padding dominates
    assert ckpt["flops"] > win["flops"]  # recomputation counted
    assert ckpt["activation_mib"] < win["activation_mib"] / 3
    assert all(r["repeats"] == 0 and r["step_s"] > 0 and r["peak_mib"] >= r["activation_mib"] for r in rows.values())


def test_ratio_table_marks_hits_and_misses():
    targets = [dict(name="fp32 utilisation", value=0.93, text="93%", goal=">= 90%", hit=True, detail="d1"),
               dict(name="bf16 step vs fastest peer", value=1.1, text="1.10x", goal=">= 1.30x", hit=False, detail="d2")]
    md = to_markdown(dict(mode="quick", targets=targets, sections={"pretrain": "| a |\n|---|"}, missing_peers=["mmpretrain"],
                          seconds=120, machine="cpu box, 2 threads"), "python tools/benchmark.py --quick")
    assert "| fp32 utilisation | **93%** | >= 90% | yes | d1 |" in md
    assert "| bf16 step vs fastest peer | **1.10x** | >= 1.30x | no | d2 |" in md
    assert "mmpretrain (`make bench`)" in md and "GPU figures" in md and "2.0 min" in md
    assert set(t["name"] for t in targets) <= set(TARGETS)


def test_write_section_replaces_only_between_markers(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text("# head\n\ntext\n")
    write_section(str(doc), "first\n")
    assert doc.read_text() == "# head\n\ntext\n\n<!-- suite:begin -->\nfirst\n<!-- suite:end -->\n"
    doc.write_text(doc.read_text() + "\n## after\n")
    write_section(str(doc), "second\n")
    text = doc.read_text()
    assert "first" not in text and "<!-- suite:begin -->\nsecond\n<!-- suite:end -->" in text
    assert text.startswith("# head\n\ntext\n") and text.endswith("## after\n")
    assert not (tmp_path / "b.md.tmp").exists()
