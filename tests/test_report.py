import math
from html.parser import HTMLParser

import numpy as np
from PIL import Image

from adcsr.report import write_report


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.cells = [], []
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])
        self._in_td = tag == "td"

    def handle_data(self, data):
        if self._in_td:
            self.cells.append(data)


def _results(tmp_path):
    crop = tmp_path / "crop_lr.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype("uint8")).save(crop)
    return {
        "title": "test run",
        "subtitle": "tiny",
        "models": [
            {"name": "teacher", "params": 16.7e6, "macs": 73e9, "latency_ms": 900.0, "psnr": 24.1, "ssim": 0.7, "niqe": 4.2},
            {"name": "student", "params": 4.1e6, "macs": 9e9, "latency_ms": 60.0, "psnr": 23.5, "ssim": 0.68, "niqe": float("nan")},
        ],
        "artifacts": [{"name": "qnn SM8750", "target": "htp", "scheme": "w8a16", "size_bytes": 4_500_000,
                       "parity_psnr_db": 44.3, "htp_coverage": 1.0}],
        "published": [{"name": "AdcSR (paper)", "params": 456e6, "macs": 495e9, "source": "paper"}],
        "crops": [{"photo": "coffee", "panels": [("LR bicubic", crop.name), ("student", crop.name)]}],
        "curves": {"stage1": {"step": [1, 2, 3], "l1": [0.3, 0.2, 0.1]}},
        "notes": ["figures measured on 2 CPU cores"],
    }


def test_report_renders_every_measured_figure(tmp_path):
    md, html = write_report(_results(tmp_path), tmp_path)
    text = md.read_text()
    for needle in ("16.70 M", "900.0 ms", "24.10 dB", "44.30 dB", "100%", "4.50 MB", "—", "Published figures"):
        assert needle in text, needle
    parser = _Collector()
    parser.feed(html.read_text())
    assert "60.0 ms" in parser.cells and "23.50 dB" in parser.cells
    for src in parser.imgs:  # every picture the page shows exists and is a real PNG
        with Image.open(tmp_path / src) as im:
            assert im.format == "PNG" and im.size[0] > 16


def test_report_without_measurements_skips_plots(tmp_path):
    md, _ = write_report({"title": "empty", "models": [{"name": "x", "psnr": math.nan}]}, tmp_path)
    assert not (tmp_path / "bubble.png").exists() and not (tmp_path / "curves.png").exists()
    assert "| x |" in md.read_text()


def test_other_methods_join_the_table_with_size_and_speed_only(tmp_path):
    """`report.baselines`: other methods timed in the report's own bench run, beside teacher and student."""
    import torch

    from adcsr.core.models.student import AdcSRStudent
    from adcsr.report_stage import build_report
    from adcsr.report import ReportSettings
    from adcsr.runner import StageContext

    torch.manual_seed(0)
    AdcSRStudent.from_preset("tiny").with_lr_skip().save_pretrained(tmp_path / "student")
    ctx = StageContext("report", tmp_path / "report", {"stage2.student": tmp_path / "student"})
    settings = ReportSettings(photos=1, lr_size=48, bench_repeats=1, baselines=["dfosd:tiny"])
    md, _ = build_report(ctx, settings, teacher_name="realesrgan-compact", teacher_options={}, seed=0,
                         subtitle="t", run_notes=[])
    row = next(line for line in md.read_text().splitlines() if line.startswith("| DFOSD-shaped teacher (tiny)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "DFOSD-shaped teacher (tiny), untrained (size and speed only)"
    assert cells[1].endswith("M") and cells[2].endswith("G") and cells[4].endswith("ms")  # params, MACs, latency
    assert cells[5] == "—"  # no quality figure: it was not trained in this run
