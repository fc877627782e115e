"""A page as headless Chromium draws it, saved as a small PNG: the README's picture of the report page. The slow
test that watches TensorBoard draw a run's curves (tests/test_tensorboard_browser.py) finds Chromium and its flags
here; it drives it with Playwright, as a page that fetches its data after loading needs real-time waiting.

    python -m sweeps.screenshot docs/studies/greff_jsb/report.html docs/report_page.png

Chromium is Debian's (`apt-get install -y chromium`); the flags keep it headless and off the network (a closed
network refuses its background connections, slowly) and let it run as root, where its sandbox cannot start.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium() -> str | None:
    """The Chromium executable on PATH, or None."""
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def capture(url: str, path: Path, width: int = 1000, height: int = 700, budget_ms: int = 20_000) -> Path:
    """Chromium's screenshot of `url` in a `width` x `height` window, after `budget_ms` of virtual time (timers
    run fast; the page's fetches are waited for), with a new empty profile."""
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium on PATH: install Debian's (`apt-get install -y chromium`)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--virtual-time-budget={budget_ms}", f"--screenshot={path}", url],
                       check=True, capture_output=True, timeout=180)
    return path


def small_png(source: Path, target: Path, width: int, colours: int = 128) -> int:
    """`source` scaled to `width` pixels wide and saved with a palette of `colours`: a page of text and plots
    stays legible at a fraction of the bytes. Returns the size in bytes."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(colours, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    return target.stat().st_size


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="an HTML file (the report's report.html)")
    parser.add_argument("png", type=Path)
    parser.add_argument("--window", default="1200x2000", help="WIDTHxHEIGHT of the browser window (default 1200x2000)")
    parser.add_argument("--width", type=int, default=900, help="the PNG's width in pixels (default 900)")
    args = parser.parse_args(argv)
    w, h = map(int, args.window.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        raw = capture(args.page.resolve().as_uri(), Path(tmp) / "page.png", w, h)
        size = small_png(raw, args.png, args.width)
    print(f"wrote {args.png} ({size // 1024} KB)")


if __name__ == "__main__":
    main()
