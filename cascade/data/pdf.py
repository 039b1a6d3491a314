"""PDF files as text: the text layer of each page, through pypdf (extra ``pdf``).

Pages are joined by blank lines (a page break is a paragraph break); a scanned PDF with no
text layer gives no text (OCR is not attempted), and is reported as an empty file by the
folder reader. The title is the document information's ``/Title`` when it has one.

>>> pdf_text("manual.pdf")  # doctest: +SKIP
('User manual', 'Getting started\\n...')
"""

from __future__ import annotations

import os

from cascade.core.errors import DataError, MissingDependency


def pdf_text(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(title, text) of a PDF file; a DataError for a file pypdf cannot read or decrypt."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:
        raise MissingDependency("pypdf", extra="pdf", purpose="reading PDF files") from None
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DataError(path, "encrypted PDF (cannot be read without its password)")
        pages = [page.extract_text() or "" for page in reader.pages]
        info = reader.metadata
    except (PdfReadError, ValueError, KeyError) as exc:
        raise DataError(path, f"unreadable PDF ({exc})") from None
    title = str(info.title).strip() if info is not None and info.title else ""
    return title, "\n\n".join(p.strip() for p in pages if p.strip())
