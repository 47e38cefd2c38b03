"""Headless Chromium for the tests that open report.html and the period report: run it, read what it built.

`CHROMIUM` is None where Debian's chromium package is not installed; tests skip then, with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
SKIP_REASON = "chromium is not installed (apt-get install chromium)"


def browser(page: Path | str, *flags: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Chromium headless on `page` (a file, or a file:// URL with a #fragment)."""
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *flags]
    url = page.as_uri() if isinstance(page, Path) else page
    return subprocess.run([*command, url], capture_output=True, text=True, timeout=90, cwd=cwd)


class Text(HTMLParser):
    """The text a reader sees (not the contents of script or style elements), and the elements the browser built."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if data.strip() and not self._hidden:
            self.text.append(data.strip())


def dump_dom(page: Path | str, tmp_path: Path) -> str:
    """The page's DOM as Chromium serializes it once the page has loaded and its script has run."""
    done = browser(page, "--dump-dom", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "</html>" in done.stdout  # the whole page loaded
    return done.stdout


def rendered(page: Path | str, tmp_path: Path) -> Text:
    parsed = Text()
    parsed.feed(dump_dom(page, tmp_path))
    return parsed
