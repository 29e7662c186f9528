"""``hivemind ingest PATH...``: put a project's docs and code into the reference library.

Walks files and directories, honours ``.gitignore`` files (and skips ``.git``), skips binaries
and files over a size limit, reads PDF and HTML files as Markdown (:mod:`hivemind_cli.extract`),
and sends only files whose content hash differs from the one the gateway holds for the same
source (so a second run on an unchanged tree sends, chunks and embeds nothing). ``--prune``
deletes the collection's documents under the given paths whose files no longer exist (a file a
glob or the size limit leaves out is not gone). A progress bar
counts files, chunks and tokens; a summary follows. The gateway comes from ``--gateway-url``,
``HIVEMIND_GATEWAY_URL`` or the hosts registry; the key from ``HIVEMIND_API_KEY`` (a write key
of the tenant). Uses :mod:`hivemind_client`.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import pathspec
import typer
from hivemind_client import Client, DocInput, HivemindError
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from hivemind_cli.extract import extractor_for

MAX_BYTES = 1024 * 1024
BATCH_DOCS = 32
BATCH_BYTES = 4 * 1024 * 1024
SNIFF_BYTES = 8192
# minified code: GitHub linguist's rule (a .js/.css file whose lines average over 110
# characters), plus .min. names and source maps; one huge line is noise to search (this
# repository's two vendored console scripts were 740 of its 5,200 chunks) and dear to embed
MINIFIED_SUFFIXES = frozenset({".js", ".mjs", ".cjs", ".css", ".map"})
MINIFIED_LINE_CHARS = 110
# what the gateway refuses in text: C0 controls but tab, newline and CR; DEL; C1 controls
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass
class Walked:
    files: dict[str, Path] = field(default_factory=dict)  # source -> file
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def source_name(path: Path, cwd: Path) -> str:
    """The document's source: its path relative to the current directory when it is below it."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(cwd).as_posix()
    except ValueError:
        return resolved.as_posix()


def _patterns(globs: list[str]) -> pathspec.PathSpec | None:
    return pathspec.PathSpec.from_lines("gitwildmatch", globs) if globs else None


class Ignores:
    """The ``.gitignore`` files that apply to a path: from the repository root down."""

    def __init__(self) -> None:
        self._specs: dict[Path, pathspec.PathSpec | None] = {}

    def _spec(self, folder: Path) -> pathspec.PathSpec | None:
        if folder not in self._specs:
            file = folder / ".gitignore"
            spec = None
            if file.is_file():
                try:
                    lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
                    spec = pathspec.PathSpec.from_lines("gitwildmatch", lines)
                except OSError:
                    spec = None
            self._specs[folder] = spec
        return self._specs[folder]

    def ignored(self, path: Path, is_dir: bool) -> bool:
        folder = path.parent
        chain = []
        while True:
            chain.append(folder)
            if (folder / ".git").exists() or folder.parent == folder:
                break
            folder = folder.parent
        for base in reversed(chain):
            spec = self._spec(base)
            if spec is None:
                continue
            rel = path.relative_to(base).as_posix() + ("/" if is_dir else "")
            if spec.match_file(rel):
                return True
        return False


def walk(
    paths: list[Path], *, include: list[str], exclude: list[str], max_bytes: int, cwd: Path
) -> Walked:
    out = Walked()
    wanted, unwanted = _patterns(include), _patterns(exclude)
    ignores = Ignores()

    def consider(file: Path) -> None:
        source = source_name(file, cwd)
        try:  # a name that is not UTF-8 cannot be a document's source (nor sent as JSON)
            source.encode("utf-8")
        except UnicodeEncodeError:
            out.skip("name not UTF-8")
            return
        if wanted is not None and not wanted.match_file(source):
            out.skip("not included")
            return
        if unwanted is not None and unwanted.match_file(source):
            out.skip("excluded")
            return
        try:
            size = file.stat().st_size
        except OSError:
            out.skip("unreadable")
            return
        if size > max_bytes:
            out.skip("too large")
            return
        out.files[source] = file

    for root in paths:
        root = root.resolve()
        if root.is_file():
            consider(root)
            continue
        if not root.is_dir():
            raise typer.BadParameter(f"{root} is not a file or a directory")
        for folder, dirs, names in os.walk(root):
            here = Path(folder)
            keep = []
            for d in sorted(dirs):
                if d == ".git":
                    continue
                if ignores.ignored(here / d, True):
                    out.skip("ignored")
                    continue
                keep.append(d)
            dirs[:] = keep
            for name in sorted(names):
                file = here / name
                if file.is_symlink() or not file.is_file():
                    continue
                if ignores.ignored(file, False):
                    out.skip("ignored")
                    continue
                consider(file)
    return out


def read_text(file: Path) -> str | None:
    """The file's text, or None when it is binary (a NUL, not UTF-8, or control characters)."""
    try:
        raw = file.read_bytes()
    except OSError:
        return None
    if b"\x00" in raw[:SNIFF_BYTES]:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _BAD_CHAR.search(text):
        return None
    return text.removeprefix("\ufeff")


def is_minified(source: str, text: str) -> bool:
    """Whether ``text`` is minified JS or CSS (or a source map)."""
    name = PurePosixPath(source).name.lower()
    suffix = PurePosixPath(name).suffix
    if suffix not in MINIFIED_SUFFIXES:
        return False
    if ".min." in name or suffix == ".map":
        return True
    lines = text.count("\n") + 1
    return len(text) / lines > MINIFIED_LINE_CHARS


def read_document(file: Path) -> tuple[str | None, Literal["markdown"] | None, str]:
    """(text, declared type, why skipped): a PDF or HTML file as Markdown
    (:mod:`hivemind_cli.extract`), any other file as its text, or None when binary or
    unreadable."""
    extract = extractor_for(file)
    if extract is None:
        return read_text(file), None, "binary"
    try:
        data = file.read_bytes()
    except OSError:
        return None, None, "unreadable"
    return extract(data), "markdown", "unreadable"


def _under(source: str, roots: list[str]) -> bool:
    """Whether ``source`` names a file under one of ``roots`` (the PATHs as sources). A URL-like
    source (``docs_ingest_text`` of a web page) never does, and ``.`` holds relative ones
    only: ``ingest . --prune`` once deleted every document that did not come from here."""
    if "://" in source:
        return False
    for r in roots:
        if r in ("", "."):
            if not source.startswith("/"):
                return True
        elif source == r or source.startswith(r.rstrip("/") + "/"):
            return True
    return False


def _gone(source: str, cwd: Path) -> bool:
    """Whether the file a document came from no longer exists."""
    path = Path(source)
    return not (path if path.is_absolute() else cwd / path).is_file()


def known_hashes(client: Client, collection: str) -> dict[str, tuple[str, str]]:
    """source -> (content hash, document id) of everything the collection holds."""
    found: dict[str, tuple[str, str]] = {}
    cursor: str | None = None
    while True:
        page = client.list_docs(collection=collection, limit=500, cursor=cursor)
        for doc in page.data:
            found[doc.source] = (doc.hash, doc.id)
        cursor = page.next_cursor
        if cursor is None:
            return found


def _gateway_url(given: str | None) -> str:
    if given:
        return given.rstrip("/")
    if os.environ.get("HIVEMIND_GATEWAY_URL"):
        return os.environ["HIVEMIND_GATEWAY_URL"].rstrip("/")
    from hivemind_common.hosts import service_url

    return service_url("gateway")


def ingest(
    paths: list[Path] = typer.Argument(..., help="Files and directories to ingest."),
    collection: str = typer.Option("default", help="The collection the documents go into."),
    include: list[str] = typer.Option(
        [], "--include", help="Only files matching this glob (repeatable)."
    ),
    exclude: list[str] = typer.Option(
        [], "--exclude", help="Skip files matching this glob (repeatable)."
    ),
    prune: bool = typer.Option(
        False, help="Delete documents under PATH whose files no longer exist."
    ),
    max_bytes: int = typer.Option(MAX_BYTES, min=1, help="Skip files larger than this."),
    chunk_tokens: int = typer.Option(None, help="Chunk size in tokens (the gateway's default)."),
    overlap_tokens: int = typer.Option(None, help="Chunk overlap in tokens."),
    force: bool = typer.Option(False, help="Send every file, changed or not."),
    minified: bool = typer.Option(
        False, help="Also send minified JS and CSS (.min. files, source maps, long lines)."
    ),
    wait: bool = typer.Option(True, help="Wait until every new chunk has its vector."),
    gateway_url: str = typer.Option(None, help="The gateway (default: HIVEMIND_GATEWAY_URL)."),
) -> None:
    """Ingest files into the reference library; only changed files are sent."""
    key = os.environ.get("HIVEMIND_API_KEY")
    if not key:
        typer.echo("error: set HIVEMIND_API_KEY to a write key of the tenant", err=True)
        raise typer.Exit(2)
    cwd = Path.cwd().resolve()
    started = time.perf_counter()
    walked = walk(paths, include=include, exclude=exclude, max_bytes=max_bytes, cwd=cwd)
    roots = [source_name(p, cwd) for p in paths]
    sent = unchanged = chunks = tokens = embedded = pruned = failed = 0
    vectors_done = True  # until a run with chunks to embed does not wait for them all
    try:
        with Client(_gateway_url(gateway_url), key) as client:
            listed = known_hashes(client, collection) if prune or not force else {}
            # chunk sizes named: every file goes, and the gateway re-chunks a document only when
            # its sizes differ from the ones it was cut with (else it answers "unchanged")
            resize = chunk_tokens is not None or overlap_tokens is not None
            known = {} if force or resize else listed
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} {task.fields[unit]}"),
                TextColumn("{task.fields[chunks]} chunks, {task.fields[tokens]} tokens"),
                TimeElapsedColumn(),
            )
            with Progress(*columns) as bar:
                task = bar.add_task(
                    "ingest", total=len(walked.files), unit="files", chunks=0, tokens=0
                )
                batch: list[DocInput] = []
                size = 0

                def flush() -> None:
                    nonlocal size, sent, unchanged, chunks, tokens, embedded, failed
                    if not batch:
                        return
                    try:
                        out = client.put_docs(
                            batch, collection=collection, chunk_tokens=chunk_tokens,
                            overlap_tokens=overlap_tokens,
                        )  # fmt: skip
                    except HivemindError as exc:
                        if len(batch) == 1:
                            failed += 1
                            bar.console.print(f"[red]refused[/red] {batch[0].source}: {exc}")
                        else:  # find the one the gateway refuses; send the others
                            items = list(batch)
                            for item in items:
                                batch[:] = [item]
                                flush()
                        batch.clear()
                        size = 0
                        return
                    for doc in out.data:
                        sent += doc.status != "unchanged"
                        unchanged += doc.status == "unchanged"
                        chunks += doc.chunks
                        tokens += doc.tokens
                        embedded += doc.embedded_later
                    bar.update(task, advance=len(batch), chunks=chunks, tokens=tokens)
                    batch.clear()
                    size = 0

                for source, file in walked.files.items():
                    text, doc_type, why = read_document(file)
                    if text is not None and not minified and is_minified(source, text):
                        text, why = None, "minified"
                    if text is None:
                        walked.skip(why)
                        bar.update(task, advance=1)
                        continue
                    digest = hashlib.sha256(text.encode()).hexdigest()
                    if known.get(source, ("", ""))[0] == digest:
                        unchanged += 1
                        bar.update(task, advance=1)
                        continue
                    batch.append(DocInput(source=source, text=text, type=doc_type))
                    size += len(text.encode())
                    if len(batch) >= BATCH_DOCS or size >= BATCH_BYTES:
                        flush()
                flush()
                if prune:  # only documents whose files are gone: a file left out by
                    # --include, --exclude or the size limit is still there
                    for source, (_, doc_id) in sorted(listed.items()):
                        if _under(source, roots) and _gone(source, cwd):
                            client.delete_doc(doc_id)
                            pruned += 1
                vectors_done = not embedded
                if wait and embedded:
                    waiting = bar.add_task(  # vectors still to come, this run's or not
                        "embedding", total=embedded, unit="vectors", chunks=chunks, tokens=tokens
                    )
                    vectors_done = _wait_for_vectors(client, bar, waiting, embedded)
    except HivemindError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    elapsed = time.perf_counter() - started
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(walked.skipped.items())) or "none"
    typer.echo(
        f"{len(walked.files)} files: {sent} sent, {unchanged} unchanged, {pruned} pruned, "
        f"{failed} refused; skipped: {skipped}"
    )
    if vectors_done:
        done = f"{embedded} chunks embedded; {elapsed:.1f} s ({embedded / max(elapsed, 1e-9):.0f} "
        done += "chunks/s embedded)"
    else:  # not waited for, or the embedding service is away: words find them meanwhile
        done = f"{embedded} chunks queued for embedding (the gateway adds their vectors); "
        done += f"{elapsed:.1f} s"
    typer.echo(f"{chunks} chunks, {tokens} tokens in the sent files; {done}")
    if failed:
        raise typer.Exit(1)


def _wait_for_vectors(
    client: Client, bar: Progress, task: object, expected: int, timeout_s: float = 3600
) -> bool:
    """Whether every pending vector was added (False: the embedding service is away)."""
    deadline = time.monotonic() + timeout_s
    first = expected
    while time.monotonic() < deadline:
        stats = client.rag_stats()
        if not stats.embedding_available and stats.pending_vectors:
            bar.console.print("embedding service unavailable: vectors will be added later")
            return False
        # the most ever pending: another writer's items can join the queue meanwhile
        first = max(first, stats.pending_vectors)
        bar.update(task, total=first, completed=first - stats.pending_vectors)  # type: ignore[arg-type]
        if stats.pending_vectors == 0:
            return True
        time.sleep(0.5)
    bar.console.print(f"vectors still pending after {timeout_s:.0f} s; the gateway goes on")
    return False
