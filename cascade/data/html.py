"""HTML pages as text, through Beautiful Soup (extra ``html``: beautifulsoup4, with Python's own
``html.parser``, so no compiled parser is needed).

Scripts, styles, templates, navigation chrome (``nav``, ``header``, ``footer``, ``aside``) and
hidden elements are dropped; block elements become paragraphs (separated by blank lines), and
``h1``-``h6`` become Markdown heading lines (``## Install``), so a passage index keeps them as
passage context exactly as it does for Markdown. The title is ``<title>``, else the first
``h1``.

>>> html_text(b"<html><title>Tea</title><body><h2>Brewing</h2><p>Use <b>hot</b> water.</p>"
...           b"<script>x()</script><p>Wait.</p></body></html>")
('Tea', '## Brewing\\n\\nUse hot water.\\n\\nWait.')
"""

from __future__ import annotations

from cascade.core.errors import MissingDependency

_DROP = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "svg", "iframe", "form")
_BLOCKS = ("p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "pre",
           "blockquote", "figure", "figcaption", "br", "hr", "td", "th")
_BREAK = "\x00"  # marks a paragraph break while the text is assembled


def _soup(raw: bytes | str):  # type: ignore[no-untyped-def]
    try:
        from bs4 import BeautifulSoup
    except ImportError:
        raise MissingDependency("beautifulsoup4", extra="html", purpose="reading HTML files") from None
    return BeautifulSoup(raw, "html.parser")


def html_text(raw: bytes | str) -> tuple[str, str]:
    """(title, text) of an HTML page (bytes: the encoding is detected from the page)."""
    soup = _soup(raw)
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text().split()) if title_tag else ""
    for tag in soup.find_all(_DROP + ("title", "head")):
        tag.decompose()
    for tag in soup.find_all(attrs={"hidden": True}):
        tag.decompose()
    for tag in soup.find_all([f"h{i}" for i in range(1, 7)]):
        words = " ".join(tag.get_text(" ").split())
        if not title and tag.name == "h1":
            title = words
        tag.replace_with(f"{_BREAK}{'#' * int(tag.name[1])} {words}{_BREAK}" if words else _BREAK)
    for tag in soup.find_all(_BLOCKS):
        tag.insert_before(_BREAK)
        tag.insert_after(_BREAK)
    text = soup.get_text()
    paragraphs = (" ".join(part.split()) for part in text.split(_BREAK))
    return title, "\n\n".join(p for p in paragraphs if p)

