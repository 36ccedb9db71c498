"""The self-contained HTML report, opened in headless Chromium; plots saved as PNG and SVG.

Chromium comes from Debian's `chromium` package: `.ci/setup-chromium.sh` installs it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from report_runs import first_k, write_run
from vitabench.report import build_report
from vitabench.report.document import render_report, save_plots

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def run_dirs(tmp_path: Path) -> list[Path]:
    return [
        write_run(tmp_path / "strong_obj", "strong", "libero_object", first_k(9), tasks=(0, 1, 2)),
        write_run(tmp_path / "strong_sp", "strong", "libero_spatial", first_k(7), tasks=(0, 1, 2)),
        write_run(tmp_path / "weak_obj", "weak", "libero_object", first_k(2), tasks=(0, 1, 2)),
    ]


def screenshot(html: Path, png: Path, profile: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run .ci/setup-chromium.sh (installs Debian's chromium) first")
    subprocess.run(
        [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1200,1600", html.as_uri(),
        ],
        check=True, capture_output=True, timeout=120,
    )


def test_html_report_renders_tables_and_plots_in_chromium(run_dirs, tmp_path) -> None:
    html_text = render_report(run_dirs, "html", with_published=True)
    html = tmp_path / "report.html"
    html.write_text(html_text)
    # Self-contained: both plots inline as SVG, nothing fetched from elsewhere.
    assert html_text.count("<svg") >= 2 and 'id="plot-suites"' in html_text and 'id="plot-tasks"' in html_text
    assert not re.search(r"""(src|href)=["']https?://""", html_text)
    assert "<table" in html_text and "Success rate (%) by suite" in html_text and "Success rate (%) by task" in html_text
    assert "90.0 [" in html_text and "Octo (quoted)" in html_text  # a measured rate and a quoted row
    png = tmp_path / "shot.png"
    screenshot(html, png, tmp_path / "chromium-profile")
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    assert pixels.shape[:2] == (1600, 1200)
    assert float(np.var(pixels)) > 0.01, "the screenshot is blank"
    # The table header colour (#2b6cb0) and the plots' default blue (#1f77b4) are on the page.
    rgb = np.round(pixels * 255).astype(int).reshape(-1, 3)
    assert (np.abs(rgb - [0x2B, 0x6C, 0xB0]).sum(axis=1) < 12).sum() > 1000
    assert (np.abs(rgb - [0x1F, 0x77, 0xB4]).sum(axis=1) < 12).sum() > 1000


def test_plots_saved_as_png_and_svg(run_dirs, tmp_path) -> None:
    paths = save_plots(build_report(run_dirs), tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["suites.png", "suites.svg", "tasks.png", "tasks.svg"]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") if path.suffix == ".png" else b"<svg" in data[:1000]
    # The heatmap has one row per policy and one cell per task, annotated with its rate.
    svg = (tmp_path / "plots" / "tasks.svg").read_text()
    assert "libero_object/t2" in svg and "libero_spatial/t0" in svg
