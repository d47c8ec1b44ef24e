"""Render the Markdown reports as GitHub would show them, and screenshot them with a headless Chromium.

    python tests/tools/md_preview.py OUT_DIR                # every field case (both files), explain --format md
    python tests/tools/md_preview.py OUT_DIR report.md ...  # given Markdown files

Per report: OUT_DIR/<name>.md, <name>.html (markdown-it-py: CommonMark + GitHub tables, raw HTML kept as GitHub
keeps <details>/<sub>, GitHub-like CSS) and <name>.png (`chromium --headless --screenshot`, 1000 px wide) when
Chromium is installed (`apt-get install chromium`). Prints one line per report: name, characters, tables, PNG.
A look-at tool for people, not a test: tests/unit/test_commands_explain.py checks the same parse.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "data" / "field_cases"
CSS = """body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;font-size:14px;
line-height:1.5;color:#1f2328;max-width:920px;margin:16px auto;padding:0 16px}
h1,h2{border-bottom:1px solid #d1d9e0;padding-bottom:.3em}h1{font-size:2em}h2{font-size:1.5em}
table{border-collapse:collapse;display:block;overflow:auto}th,td{border:1px solid #d1d9e0;padding:6px 13px}
tr:nth-child(2n){background:#f6f8fa}code{background:#eff1f3;border-radius:6px;padding:.2em .4em;font-size:85%}
pre{background:#f6f8fa;padding:16px;overflow:auto;border-radius:6px}pre code{background:none;padding:0}
details{margin:8px 0}summary{cursor:pointer}"""


def field_case_logs() -> list[tuple[str, str]]:
    out = []
    for name, key, ident in (("cases.jsonl", "log_excerpt", "source"), ("cases-2.jsonl", "log", "id")):
        for line in (CASES / name).read_text().splitlines():
            if line.strip() and (case := json.loads(line)).get(key, "").strip():
                out.append((re.sub(r"[^A-Za-z0-9]+", "-", case[ident])[:48].strip("-"), case[key]))
    return out


def to_html(text: str, title: str) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(text)
    return f"<!doctype html><meta charset=utf-8><title>{title}</title><style>{CSS}</style>\n{body}"


def screenshot(html: Path, png: Path) -> bool:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        return False
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1000,6000", f"--screenshot={png}", html.as_uri()],
                   capture_output=True, timeout=120, check=False)
    if png.is_file():
        _crop(png)
    return png.is_file()


def _crop(png: Path) -> None:
    """Cut the blank page below the report (Pillow comes with matplotlib)."""
    from PIL import Image, ImageOps

    with Image.open(png) as img:
        box = ImageOps.invert(img.convert("RGB")).getbbox()
        if box:
            img.crop((0, 0, img.width, min(img.height, box[3] + 24))).save(png)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    reports = [(Path(p).stem, Path(p).read_text(encoding="utf-8")) for p in argv[1:]]
    if not reports:
        for name, log in field_case_logs():
            (out / f"{name}.log").write_text(log, encoding="utf-8")
            done = subprocess.run([sys.executable, "-m", "diagnostics", "explain", str(out / f"{name}.log"),
                                   "--format", "md"], capture_output=True, text=True, cwd=ROOT, check=True)
            reports.append((name, done.stdout))
    for name, text in reports:
        (out / f"{name}.md").write_text(text, encoding="utf-8")
        html = out / f"{name}.html"
        html.write_text(to_html(text, name), encoding="utf-8")
        png = screenshot(html, out / f"{name}.png")
        print(f"{name}: {len(text):,} characters, {html.read_text().count('<table>')} tables, "
              f"png {'written' if png else 'not written (no chromium)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
