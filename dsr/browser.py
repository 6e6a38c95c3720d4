"""Look at the built book in a real browser: headless Chromium, driven by selenium.

:func:`check_book` opens every HTML page of a built book at a desktop (1400 x 900) and a phone
(400 x 800) window and reports, per page and width, what a reader would see as broken: the
page scrolls sideways, a table is wider than the column it sits in, an image did not load,
or (on the intro) the verdict column is off-screen. On the phone a wide table may scroll
inside its own box; on the desktop every table fits its column. A full-page screenshot of each
page at each width is saved for people to look at.

Needs Debian's ``chromium`` and ``chromium-driver`` and selenium from PyPI (``.ci/run``
installs them); :func:`available` says whether they are here.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

WIDTHS = {"desktop": (1400, 900), "phone": (400, 800)}
# Widths at which a table wider than the text column is acceptable when it scrolls inside its
# own box (the page itself never scrolls sideways): a ten-column table cannot fit 400 px.
SCROLL_OK = {"phone"}
# Pages Sphinx writes that are not the book's own (search, index of terms).
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
SKIP = {"search.html", "genindex.html", "py-modindex.html", "index.html"}  # index: a redirect

# What the page looks like, measured in the browser. ``overflowing_tables``: tables wider
# than the box they sit in (their scroll container, or else the article) by more than 1 px:
# columns cut off, hidden behind a scroll bar, or pushing the page sideways. ``verdict``: the
# horizontal extent of every cell of the first table's "Verdict" column (the intro's summary).
MEASURE = """
const doc = document.documentElement;
const article = document.querySelector('main article, article, main') || document.body;
const tables = [...document.querySelectorAll('article table, main table')];
const overflowing = [];
for (const t of tables) {
  let box = t.parentElement;
  while (box && box !== article && getComputedStyle(box).overflowX === 'visible') {
    box = box.parentElement;
  }
  box = box || article;
  const limit = box.getBoundingClientRect().width;
  if (t.getBoundingClientRect().width > limit + 1) {
    const name = (t.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 50);
    const scrolls = ['auto', 'scroll'].includes(getComputedStyle(box).overflowX);
    overflowing.push({name: name, scrolls: scrolls});
  }
}
const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))
  .map(i => i.getAttribute('src'));
let verdict = null;
const first = tables[0];
if (first) {
  const head = [...first.querySelectorAll('tr')][0];
  const names = head ? [...head.children].map(c => c.textContent.trim()) : [];
  const col = names.findIndex(n => n.startsWith('Verdict'));
  if (col >= 0) {
    const cells = [...first.querySelectorAll('tbody tr')].map(r => r.children[col]).filter(c => c);
    const boxes = cells.map(c => c.getBoundingClientRect());
    verdict = {cells: cells.length, shown: boxes.filter(r => r.width > 0).length,
               left: Math.min(...boxes.map(r => r.left)),
               right: Math.max(...boxes.map(r => r.right))};
  }
}
return {scroll_width: doc.scrollWidth, client_width: doc.clientWidth,
        overflowing_tables: overflowing, broken_images: broken, verdict: verdict,
        images: document.images.length, tables: tables.length};
"""


@dataclass
class PageView:
    """One page at one window width, as the browser showed it."""

    page: str
    width: str
    scroll_width: int
    client_width: int
    overflowing_tables: list[dict]
    broken_images: list[str]
    verdict: dict | None
    images: int
    tables: int
    screenshot: Path
    problems: list[str] = field(default_factory=list)


def available() -> str | None:
    """None when the browser test can run here, else the reason it cannot."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if not (chromium() and shutil.which("chromedriver")):
        return (
            "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        )
    return None


def chromium() -> str | None:
    """The Chromium (or Chrome) binary on the PATH: Debian's ``chromium``, Ubuntu's
    ``chromium-browser``, or ``google-chrome`` (on CI runner images)."""
    return next(filter(None, map(shutil.which, BROWSERS)), None)


def driver():
    """A headless Chromium driven by selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium() or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def pages(html: Path) -> list[Path]:
    """The book's own pages under the HTML folder ``html``."""
    found = [p for p in sorted(html.rglob("*.html")) if p.name not in SKIP]
    return [p for p in found if "_static" not in p.parts and "_sources" not in p.parts]


def problems(view: PageView, intro: bool) -> list[str]:
    """What a reader would find broken in ``view``, one phrase each."""
    out = []
    if view.scroll_width > view.client_width + 1:
        out.append(f"scrolls sideways ({view.scroll_width} px of {view.client_width})")
    for t in view.overflowing_tables:  # on a phone a wide table may scroll in its own box
        if not (t["scrolls"] and view.width in SCROLL_OK):
            out.append(f"table wider than its column: {t['name']!r}")
    out += [f"image did not load: {src}" for src in view.broken_images]
    if intro:
        v = view.verdict
        if v is None or not v["cells"]:
            out.append("no summary table with a Verdict column")
        elif v["shown"] < v["cells"] or v["right"] > view.client_width + 1 or v["left"] < 0:
            out.append(
                f"verdict column off-screen ({v['shown']} of {v['cells']} cells shown, right "
                f"edge {v['right']:.0f} px of {view.client_width})"
            )
    return out


def measure(browser, name: str, width: str, intro: bool) -> PageView:
    """What the loaded page ``name`` looks like now, once its document is complete."""
    deadline = time.monotonic() + 10
    while browser.execute_script("return document.readyState") != "complete":
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    view = PageView(name, width, screenshot=Path(), **browser.execute_script(MEASURE))
    view.problems = problems(view, intro)
    return view


def check_book(html: Path, shots: Path, intro: str = "book/intro.html") -> list[PageView]:
    """Open every page of the built book ``html`` at each width of :data:`WIDTHS`, save a
    full-page screenshot to ``shots/<width>/<page>.png``, and return what was seen."""
    views = []
    browser = driver()
    try:
        for width, (w, h) in WIDTHS.items():
            browser.set_window_size(w, h)
            for page in pages(html):
                name = page.relative_to(html).as_posix()
                browser.get(page.resolve().as_uri())
                view = measure(browser, name, width, intro=name == intro)
                if view.problems:  # a page still settling on a busy machine: look once more
                    time.sleep(1.0)
                    view = measure(browser, name, width, intro=name == intro)
                view.screenshot = (
                    shots / width / (name.replace("/", "_").removesuffix(".html") + ".png")
                )
                view.screenshot.parent.mkdir(parents=True, exist_ok=True)
                full = browser.execute_script("return document.documentElement.scrollHeight")
                browser.set_window_size(w, max(h, min(int(full) + 100, 12000)))
                browser.save_screenshot(str(view.screenshot))
                browser.set_window_size(w, h)
                views.append(view)
    finally:
        browser.quit()
    return views


def look(html: Path, shots: Path) -> int:
    """:func:`check_book`, printed: one line per page and width, then a count; 1 if any page
    looks broken, else 0."""
    views = check_book(html, shots)
    for v in views:
        print(f"  {v.width:7s} {v.page:45s} {'; '.join(v.problems) or 'ok'}")
    bad = sum(bool(v.problems) for v in views)
    print(
        f"{len(views)} page views in headless Chromium, {bad} with problems; screenshots: {shots}"
    )
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m dsr.browser",
        description="Open every page of a built book in headless Chromium at 1400 and 400 px "
        "wide, save screenshots, and list what looks broken (sideways scrolling, tables wider "
        "than their column, images that did not load, the intro's verdict column off-screen).",
    )
    parser.add_argument("html", type=Path, help="the built book's HTML folder (_build/html)")
    parser.add_argument("--shots", type=Path, help="screenshots (default: HTML/../../screenshots)")
    args = parser.parse_args(argv)
    if not pages(args.html):
        parser.error(f"{args.html}: no built book there (expected its HTML pages)")
    reason = available()
    if reason:
        parser.error(reason)
    return look(args.html, args.shots or args.html.parent.parent / "screenshots")


if __name__ == "__main__":
    raise SystemExit(main())
