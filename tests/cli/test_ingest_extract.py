"""`hivemind ingest` reads PDF and HTML files as Markdown (issue 20): pages and sections become
headings that the gateway's Markdown chunker splits on, and what a reader never sees is left out."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from hivemind_cli.extract import html_markdown, pdf_markdown
from hivemind_cli.main import app
from support.gateway import RunningGateway


def make_pdf(pages: list[str]) -> bytes:
    """A minimal PDF (one Helvetica text line per page), written by hand: no PDF writer needed."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (n, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


HTML = b"""<!doctype html><html><head><title>t</title><style>body{color:red}</style>
<script>var secret = "do not index";</script></head><body>
<nav><ul><li><a href="/">Home</a></li></ul></nav>
<h1>Runbook</h1><p>Start here.</p>
<h2>Restart the queue</h2><p>Run <code>systemctl restart river</code> on the worker.</p>
<template><p>hidden template</p></template>
<h2>Rotate keys</h2><ol><li>Create a key</li><li>Revoke the old one</li></ol>
</body></html>"""


def test_a_pdf_becomes_one_section_per_page() -> None:
    text = pdf_markdown(make_pdf(["The boiler manual", "Bleed the radiators every autumn"]))
    assert text is not None
    assert text.splitlines()[0] == "# Page 1"
    assert "# Page 2\n\nBleed the radiators every autumn" in text
    assert pdf_markdown(b"%PDF-1.4 not really a pdf") is None
    assert pdf_markdown(b"") is None


def test_html_keeps_headings_lists_and_code_but_not_scripts_or_styles() -> None:
    text = html_markdown(HTML)
    assert text is not None
    assert "# Runbook" in text and "## Restart the queue" in text and "## Rotate keys" in text
    assert "`systemctl restart river`" in text and "1. Create a key" in text
    assert "secret" not in text and "color:red" not in text and "hidden template" not in text


def test_text_with_control_characters_is_cleaned_for_the_gateway() -> None:
    text = html_markdown(b"<p>form\x0cfeed and \x07bell</p>")
    assert text is not None and "\x0c" not in text and "\x07" not in text


def test_ingest_sends_pdf_and_html_as_markdown_sections(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: object
) -> None:
    root = tmp_path / "library"
    root.mkdir()
    (root / "boiler.pdf").write_bytes(
        make_pdf(["Boiler model X200 overview", "Bleed the radiators every autumn with a key"])
    )
    (root / "runbook.html").write_bytes(HTML)
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\n%\xe2\xe3 garbage")
    env = {"HIVEMIND_API_KEY": gateway.key(), "HIVEMIND_GATEWAY_URL": gateway.url}
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(root)], env=env)
    assert result.exit_code == 0, result.output
    assert "2 sent" in result.output and "1 unreadable" in result.output
    with gateway.client() as c:
        hits = c.post("/v1/docs/search", json={"query": "bleed the radiators"}).json()["data"]
        assert hits[0]["source"].endswith("boiler.pdf") and hits[0]["heading"] == "Page 2"
        hits = c.post("/v1/docs/search", json={"query": "restart the queue worker"}).json()
        top = hits["data"][0]
        assert top["source"].endswith("runbook.html") and "Restart the queue" in top["heading"]
        assert "secret" not in top["text"]
    again = runner.invoke(app, ["ingest", str(root)], env=env)
    assert again.exit_code == 0 and "0 sent, 2 unchanged" in again.output


def test_a_file_the_parsers_choke_on_is_skipped_not_fatal() -> None:
    # bs4 raises ParserRejectedMarkup on this; a mangled PDF object raised AttributeError: both
    # once escaped and ended `hivemind ingest` with a traceback
    assert html_markdown(b"<!DOCTYPE x><p>a<![ foo") is None
    good = make_pdf(["The boiler manual", "Bleed the radiators every autumn"])
    for cut in range(0, len(good), max(1, len(good) // 80)):  # objects overwritten everywhere
        mangled = good[:cut] + b"<< /Type 5 /Kids 7 >>" + good[cut + 21 :]
        assert pdf_markdown(mangled) is None or isinstance(pdf_markdown(mangled), str)
