"""`hivemind ingest`: .gitignore, binaries, large files, unchanged files, pruning, globs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hivemind_cli.main import app
from support.gateway import RunningGateway


def _tree(root: Path) -> None:
    (root / ".git").mkdir()
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "docs").mkdir()
    (root / "docs" / "guide.md").write_text("# Guide\n\n## Install\n\nRun make install.\n")
    (root / "docs" / "notes.log").write_text("ignored by the root .gitignore\n")
    (root / "src").mkdir()
    (root / "src" / ".gitignore").write_text("generated_*.py\n")
    (root / "src" / "app.py").write_text("def main():\n    return 'hello'\n")
    (root / "src" / "generated_x.py").write_text("X = 1\n")
    (root / "src" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (root / "src" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (root / "build").mkdir()
    (root / "build" / "out.md").write_text("# Built\n")
    (root / "big.txt").write_text("x" * 5000)


def _ingest(gateway: RunningGateway, *args: str) -> str:
    env = {"HIVEMIND_API_KEY": gateway.key(), "HIVEMIND_GATEWAY_URL": gateway.url}
    result = CliRunner().invoke(app, ["ingest", *args, "--max-bytes", "4096"], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _sources(gateway: RunningGateway, collection: str = "default") -> set[str]:
    with gateway.client() as c:
        page = c.get("/v1/docs", params={"collection": collection, "limit": 500}).json()
    return {d["source"] for d in page["data"]}


def test_ingest_honours_gitignore_skips_binaries_and_sends_only_changes(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = _ingest(gateway, ".")
    assert _sources(gateway) == {".gitignore", "docs/guide.md", "src/.gitignore", "src/app.py"}
    assert "4 sent, 0 unchanged" in out
    assert "2 binary" in out and "1 too large" in out and "3 ignored" in out
    again = _ingest(gateway, ".")
    assert "0 sent, 4 unchanged" in again and "0 chunks embedded" in again
    (tmp_path / "src" / "app.py").write_text("def main():\n    return 'changed'\n")
    changed = _ingest(gateway, "src")
    assert "1 sent, 1 unchanged" in changed
    with gateway.client() as c:
        hits = c.post("/v1/docs/search", json={"query": "changed main"}).json()["data"]
    assert hits[0]["source"] == "src/app.py" and "changed" in hits[0]["text"]


def test_minified_code_is_skipped_unless_asked_for(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = tmp_path / "web"
    web.mkdir()
    (web / "app.js").write_text("function start() {\n  return load();\n}\n")
    (web / "vendor.min.js").write_text("function a(){return 1}\n")
    (web / "bundle.js").write_text("var a=1;" * 300 + "\n")  # one long line, no .min. name
    (web / "site.css").write_text("body{margin:0}" * 200)
    (web / "app.js.map").write_text('{"version":3}')
    (web / "notes.md").write_text("a" * 300 + "\n")  # long lines in prose are not minified
    monkeypatch.chdir(tmp_path)
    out = _ingest(gateway, "web")
    assert "4 minified" in out
    assert _sources(gateway) == {"web/app.js", "web/notes.md"}
    out = _ingest(gateway, "web", "--minified")
    assert "4 sent, 2 unchanged" in out
    assert len(_sources(gateway)) == 6


def test_prune_removes_only_gone_files_under_the_given_paths(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    _ingest(gateway, "docs", "src")
    (tmp_path / "src" / "app.py").unlink()
    out = _ingest(gateway, "docs", "--prune")
    assert "0 pruned" in out  # src/ was not named: its documents stay
    assert "src/app.py" in _sources(gateway)
    out = _ingest(gateway, "src", "--prune")
    assert "1 pruned" in out
    assert _sources(gateway) == {"docs/guide.md", "src/.gitignore"}


def test_prune_keeps_files_left_out_by_globs_and_works_with_force(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    _ingest(gateway, ".")
    # a narrower run with --prune once deleted every document its globs left out
    out = _ingest(gateway, ".", "--include", "*.md", "--prune")
    assert "0 pruned" in out
    assert _sources(gateway) == {".gitignore", "docs/guide.md", "src/.gitignore", "src/app.py"}
    (tmp_path / "docs" / "guide.md").unlink()
    out = _ingest(gateway, ".", "--force", "--prune")  # --force once skipped the listing
    assert "1 pruned" in out
    assert _sources(gateway) == {".gitignore", "src/.gitignore", "src/app.py"}


def test_prune_of_dot_leaves_documents_that_did_not_come_from_a_file_here(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ingest . --prune` took every source as under "." and gone: a page stored with
    docs_ingest_text (a URL) and files ingested by absolute path elsewhere were deleted."""
    _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    with gateway.client() as c:
        for source in ("https://docs.example.org/guide", "/srv/elsewhere/notes.md"):
            assert (
                c.post("/v1/docs", json={"source": source, "text": "# Kept\n"}).status_code == 200
            )
    _ingest(gateway, ".")
    (tmp_path / "docs" / "guide.md").unlink()
    out = _ingest(gateway, ".", "--prune")
    assert "1 pruned" in out
    sources = _sources(gateway)
    assert {"https://docs.example.org/guide", "/srv/elsewhere/notes.md"} <= sources
    assert "docs/guide.md" not in sources


def test_a_file_name_that_is_not_utf8_is_skipped_not_fatal(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "ok.md").write_text("# Fine\n\ntext\n")
    with open(bytes(tmp_path) + b"/bad\xff.md", "w") as f:
        f.write("# Bad name\n")
    monkeypatch.chdir(tmp_path)
    out = _ingest(gateway, ".")
    assert "1 sent" in out and "1 name not UTF-8" in out
    assert _sources(gateway) == {"ok.md"}


def test_include_exclude_and_collections(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    _ingest(gateway, ".", "--collection", "code", "--include", "*.py", "--exclude", "src/gen*")
    assert _sources(gateway, "code") == {"src/app.py"}
    assert _sources(gateway) == set()


def test_ingest_needs_a_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ingest", str(tmp_path)], env={"HIVEMIND_API_KEY": ""})
    assert result.exit_code == 2 and "HIVEMIND_API_KEY" in result.output


def test_new_chunk_sizes_rechunk_an_unchanged_tree(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command skipped files by hash alone, so a run with other chunk sizes on an unchanged
    tree sent nothing and nothing was cut again; now the gateway judges, by hash and sizes."""
    _tree(tmp_path)
    steps = "\n\n".join(f"Step {i}: copy the backup of disk {i} to the NAS." for i in range(8))
    (tmp_path / "docs" / "guide.md").write_text(f"# Guide\n\n## Install\n\n{steps}\n")
    monkeypatch.chdir(tmp_path)
    _ingest(gateway, "docs")
    resized = _ingest(gateway, "docs", "--chunk-tokens", "16", "--overlap-tokens", "0")
    assert "1 sent, 0 unchanged" in resized
    again = _ingest(gateway, "docs", "--chunk-tokens", "16", "--overlap-tokens", "0")
    assert "0 sent, 1 unchanged" in again and "0 chunks embedded" in again
    with gateway.client() as c:
        parts = c.get("/v1/docs", params={"collection": "default"}).json()["data"]
        detail = c.get(f"/v1/docs/{parts[0]['id']}").json()
    assert len(detail["parts"]) >= 2  # cut again at 16 tokens


def test_the_embedding_row_counts_vectors_not_files(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wait for vectors shares the files row's columns: it showed "4278/4278 files" for
    a tree of 254 files (it counts the chunks still without a vector)."""
    (tmp_path / "notes.md").write_text("# Notes\n\n" + "\n\n".join(
        f"## Part {i}\n\nThe backup job {i} runs at night." for i in range(12)
    ))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    out = _ingest(gateway, "notes.md")
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "1/1 files" in rows["ingest"]
    assert "embedding" in rows, out
    assert "/12 vectors " in rows["embedding"] and " files " not in rows["embedding"]
    # this gateway runs without an embedding service: the chunks are queued, not embedded
    assert "12 chunks queued for embedding" in out and "chunks embedded" not in out


def test_a_batch_past_the_requests_chunk_cap_is_sent_a_file_at_a_time(
    redis_url: str, internal_token: str, data_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The gateway caps a request's chunks as well as a document's: files that fit alone but not
    together still all go in (the command resends a refused batch a file at a time)."""
    from hivemind_client import Client

    from support.gateway import running_gateway

    sent: list[int] = []  # the documents of each request the command makes
    put_docs = Client.put_docs

    def counted(self: Client, docs: list[Any], **kwargs: Any) -> Any:
        sent.append(len(docs))
        return put_docs.__get__(self, Client)(docs, **kwargs)

    monkeypatch.setattr(Client, "put_docs", counted)

    (tmp_path / ".git").mkdir()
    for name in ("a.c", "b.c", "c.c"):
        (tmp_path / name).write_text("".join(f"{name[0]}{i}(\n" for i in range(20)))
    monkeypatch.chdir(tmp_path)
    with running_gateway(
        redis_url, internal_token, data_dir, docs_max_chunks=30,
        embedding_url="http://127.0.0.1:9", inference_url="http://127.0.0.1:9",
        trainer_url="http://127.0.0.1:9",
    ) as gw:  # fmt: skip
        out = _ingest(gw, ".", "--no-wait")
        assert "3 sent" in out and "0 refused" in out, out
        assert _sources(gw) == {"a.c", "b.c", "c.c"}
    assert sent == [3, 1, 1, 1]  # the batch, refused (60 chunks), then each file alone
