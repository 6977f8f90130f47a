"""The benchmark suite's plumbing: detection-backbone rows, the ratio table, the docs section writer."""
import pytest

from benchmarks.suite import TARGETS, run_part, to_markdown, write_section


def _fake_rows(speeds, tflops):
    def compare(impls, batch, dtype, warmup, repeats, device):
        return [dict(impl=i, step_s=8 / speeds[dtype][i], min_s=0, max_s=0, img_per_s=speeds[dtype][i],
                     tflop_per_s=tflops[dtype][i], ours_over_this=speeds[dtype]["ours"] / speeds[dtype][i])
                for i in impls]
    return compare


def test_pretrain_part_ratios_point_the_right_way(monkeypatch, cpu_bf16):
    """Ours over the fastest peer (not the slowest, not inverted), utilisation against the higher of the two
    peak measurements, hit / miss against each goal."""
    import benchmarks.peers
    import benchmarks.measure as measure
    import benchmarks.pretrain as pretrain
    cpu_bf16(True)
    speeds = {"fp32": dict(ours=3.0, hf=2.5, mmpretrain=2.0), "bf16": dict(ours=6.5, hf=5.0, mmpretrain=5.5)}
    tflops = {"fp32": dict(ours=0.19, hf=0.15, mmpretrain=0.12), "bf16": dict(ours=0.4, hf=0.3, mmpretrain=0.33)}
    peaks = iter([0.18e12, 0.2e12, 0.8e12, 0.7e12])
    monkeypatch.setattr(pretrain, "compare_pretrain_steps", _fake_rows(speeds, tflops))
    monkeypatch.setattr(measure, "matmul_peak", lambda dtype, device: next(peaks))
    monkeypatch.setattr(benchmarks.peers, "enable_mmpretrain_peer", lambda: True)
    res = run_part("pretrain", "quick", log=lambda m: None)
    t = {x["name"]: x for x in res["targets"]}
    assert t["fp32 step vs fastest peer"]["value"] == pytest.approx(3.0 / 2.5) and t["fp32 step vs fastest peer"]["hit"]
    assert t["fp32 utilisation"]["value"] == pytest.approx(0.19 / 0.2) and t["fp32 utilisation"]["hit"]
    assert t["bf16 step vs fastest peer"]["value"] == pytest.approx(6.5 / 5.5)
    assert not t["bf16 step vs fastest peer"]["hit"]  # goal 1.3x
    assert t["bf16 utilisation"]["value"] == pytest.approx(0.4 / 0.8) and not t["bf16 utilisation"]["hit"]
    assert "mmpretrain" in t["bf16 step vs fastest peer"]["detail"]
    assert res["missing_peers"] == [] and res["table"].count("\n| bf16 |") == 3


def test_pretrain_part_skips_bf16_where_it_would_be_emulated(monkeypatch, cpu_bf16):
    import benchmarks.peers
    import benchmarks.measure as measure
    import benchmarks.pretrain as pretrain
    cpu_bf16(False)
    speeds, tflops = {"fp32": dict(ours=3.0, hf=2.5)}, {"fp32": dict(ours=0.19, hf=0.15)}
    monkeypatch.setattr(pretrain, "compare_pretrain_steps", _fake_rows(speeds, tflops))
    monkeypatch.setattr(measure, "matmul_peak", lambda dtype, device: 0.2e12)
    monkeypatch.setattr(benchmarks.peers, "enable_mmpretrain_peer", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        res = run_part("pretrain", "quick", log=lambda m: None)
    names = [x["name"] for x in res["targets"]]
    assert names == ["fp32 step vs fastest peer", "fp32 utilisation"]
    assert "| bf16 | skipped: this CPU" in res["table"] and res["table"].count("\n| fp32 |") == 2


def test_memory_target_is_a_ceiling():
    from benchmarks.suite import _Part
    part = _Part(lambda m: None)
    part.target("windowed / all-global activation memory", 0.3, str, "")
    part.target("windowed / all-global activation memory", 0.9, str, "")
    assert [x["hit"] for x in part.targets] == [True, False]


def test_detection_backbone_rows_windowed_global_checkpointed():
    pytest.importorskip("mmdet")
    """At 128² (an 8 x 8 grid) the ViTDet config's ViT-B: windows pad the grid to 14 x 14 per window, so the
    windowed model does more FLOPs than the all-global one here (the ratio is a measurement, not an assumption);
    checkpointing holds far fewer activations; with repeats=0 the memory pass is the timing."""
    from benchmarks.detection import detection_backbones
    rows = {r["variant"]: r for r in detection_backbones(size=128, warmup=0, repeats=0)}
    win, glob, ckpt = rows["vitdet"], rows["vitdet-global"], rows["vitdet-ckpt"]
    assert glob["speedup_vs_global"] == glob["flop_ratio_vs_global"] == glob["activation_vs_global"] == 1.0
    assert win["flops"] > glob["flops"]  # 14 x 14 windows over an 8 x 8 grid: padding dominates
    assert ckpt["flops"] > win["flops"]  # the count includes checkpointing's recomputed forward
    assert ckpt["activation_mib"] < win["activation_mib"] / 3
    assert all(r["repeats"] == 0 and r["step_s"] > 0 and r["peak_mib"] >= r["activation_mib"] for r in rows.values())


def test_ratio_table_marks_hits_and_misses():
    targets = [dict(name="fp32 utilisation", value=0.93, text="93%", goal=">= 90%", hit=True, detail="d1"),
               dict(name="bf16 step vs fastest peer", value=1.1, text="1.10x", goal=">= 1.30x", hit=False, detail="d2")]
    md = to_markdown(dict(mode="quick", targets=targets, sections={"pretrain": "| a |\n|---|"}, missing_peers=["mmpretrain"],
                          seconds=120, machine="cpu box, 2 threads"), "python -m benchmarks --quick")
    assert "| fp32 utilisation | **93%** | >= 90% | yes | d1 |" in md
    assert "| bf16 step vs fastest peer | **1.10x** | >= 1.30x | no | d2 |" in md
    assert "mmpretrain (`make bench`)" in md and "GPU figures" in md and "2.0 min" in md
    assert all(t["name"] in TARGETS for t in targets)


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


def test_the_child_harness_returns_the_result_and_reports_a_failure():
    """benchmarks.harness: the function runs in a fresh process and its JSON result comes back; a failure raises
    with the child's last lines."""
    from benchmarks.harness import run_in_child
    from benchmarks.measure import time_stats
    seen = []
    assert run_in_child("benchmarks.measure:time_stats", dict(times=[1.0, 2.0, 4.0]), echo=seen.append) == \
        time_stats([1.0, 2.0, 4.0])
    with pytest.raises(RuntimeError, match=r"(?s)failed in its process.*median"):
        run_in_child("benchmarks.measure:time_stats", dict(times=[]))
