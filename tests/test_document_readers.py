"""Readers of folders of documents: Markdown, plain text, HTML (beautifulsoup4) and PDF (pypdf)."""

from __future__ import annotations

import builtins
import importlib.util
from pathlib import Path

import pytest

import cascade
from cascade.core.errors import DataError, MissingDependency
from cascade.core.types import ReadReport
from cascade.data.folder import read_folder

HAS_BS4 = importlib.util.find_spec("bs4") is not None
HAS_PYPDF = importlib.util.find_spec("pypdf") is not None

PAGE = """<!doctype html><html><head><title>Tea guide</title><style>p {color: red}</style></head>
<body><nav>Home | About</nav><h1>Tea</h1><p>Green tea is <b>steamed</b>,
black tea is oxidised.</p><script>track()</script><h2>Storage</h2><ul><li>Keep it dry.</li>
<li>Keep it dark.</li></ul><p hidden>secret</p><footer>(c) 2026</footer></body></html>"""


def minimal_pdf(lines: list[str], title: str = "") -> bytes:
    """A one-page PDF whose text layer holds ``lines`` (Helvetica, one line each)."""
    ops = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
    info = f"<< /Title ({title}) >>" if title else "<< >>"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(ops)} >>\nstream\n{ops}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        info,
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def test_markdown_and_text(tmp_path: Path) -> None:
    (tmp_path / "a.markdown").write_text("Intro.\n# Title here\n\nBody.\n")
    (tmp_path / "b.txt").write_text("plain")
    (tmp_path / "c.docx").write_text("not read")
    assert [(d.id, d.title) for d in read_folder(tmp_path)] == [("a.markdown", "Title here"), ("b.txt", "")]


@pytest.mark.skipif(not HAS_BS4, reason="beautifulsoup4 is not installed (pip install 'cascade-ir[html]')")
def test_html_text_title_and_headings(tmp_path: Path) -> None:
    (tmp_path / "tea.html").write_text(PAGE)
    (tmp_path / "empty.htm").write_text("<html><body><script>x()</script></body></html>")
    report = ReadReport()
    docs = list(read_folder(tmp_path, skip_bad=True, report=report))
    assert [(d.id, d.title) for d in docs] == [("tea.html", "Tea guide")]
    assert docs[0].text == ("# Tea\n\nGreen tea is steamed, black tea is oxidised.\n\n## Storage\n\n"
                            "Keep it dry.\n\nKeep it dark.")
    assert report.skipped == 1 and "empty.htm: no text" in report.problems[0]
    # headings of the page become passage context in a passage index
    idx = cascade.Index.build(docs, tmp_path / "i.idx", passages={"tokens": 10})
    assert [d.title for d in idx] == ["Tea guide > Tea", "Tea guide > Tea > Storage"]


@pytest.mark.skipif(not HAS_PYPDF, reason="pypdf is not installed (pip install 'cascade-ir[pdf]')")
def test_pdf_text_layer(tmp_path: Path) -> None:
    (tmp_path / "manual.pdf").write_bytes(minimal_pdf(["Cascade manual", "Passages make long documents searchable."],
                                                      title="The manual"))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    with pytest.raises(DataError, match="broken.pdf: unreadable PDF"):
        list(read_folder(tmp_path))
    report = ReadReport()
    docs = list(read_folder(tmp_path, skip_bad=True, report=report))
    assert [(d.id, d.title) for d in docs] == [("manual.pdf", "The manual")]
    assert "Passages make long documents searchable." in docs[0].text
    assert report.skipped == 1


def test_missing_library_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_extras(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.split(".")[0] in ("bs4", "pypdf"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_extras)
    (tmp_path / "a.html").write_text(PAGE)
    with pytest.raises(MissingDependency, match=r"beautifulsoup4 is needed for reading HTML files: "
                                                r"pip install 'cascade-ir\[html\]'"):
        list(read_folder(tmp_path, skip_bad=True))
    (tmp_path / "a.html").unlink()
    (tmp_path / "b.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(MissingDependency, match=r"pip install 'cascade-ir\[pdf\]'"):
        list(read_folder(tmp_path))
