"""Chunking in the served model's tokens: sizes, overlap validation, structure, termination."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hivemind_common.errors import Invalid
from hivemind_gateway.docs.chunking import (
    MAX_CHUNK_TOKENS,
    MIN_CHUNK_TOKENS,
    check_sizes,
    chunk_text,
    detect,
    split_lines,
    summary,
)
from hivemind_gateway.docs.tokens import embedder_limit, served_tokenizer
from hivemind_gateway.search.index import DocRef

REPO = Path(__file__).resolve().parents[2]
TOKENIZER = served_tokenizer()
LIMIT = embedder_limit()

# text made of what breaks chunkers: long lines, no newlines, blank runs, CJK, emoji, fences
pieces = st.sampled_from(
    ["word ", "\n", "\n\n", "# Title\n", "## Sub\n", "```\n", "def f():\n", "    return 1\n",
     "x" * 300, "日本語の文章。", "🙂", "\t", "    ", "a" * 5000, "<|im_end|>", "class A:\n"]
)  # fmt: skip
documents = st.lists(st.one_of(pieces, st.text(max_size=80)), max_size=60).map("".join)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=documents,
    size=st.integers(MIN_CHUNK_TOKENS, 300),
    overlap_share=st.floats(0, 0.99),
    doc_type=st.sampled_from(["markdown", "code", "text"]),
    language=st.sampled_from(["python", "js", "go", ""]),
)
def test_every_chunk_fits_and_chunking_always_ends(
    text: str, size: int, overlap_share: float, doc_type: str, language: str
) -> None:
    overlap = min(size - 1, int(size * overlap_share))
    chunks = chunk_text(
        text, counter=TOKENIZER, size=size, overlap=overlap, doc_type=doc_type,  # type: ignore[arg-type]
        language=language, embed_limit=LIMIT,
    )  # fmt: skip
    lines = split_lines(text)
    for c in chunks:
        assert c.tokens == TOKENIZER.count(c.text) <= size
        assert len(c.text) <= 4000 and c.text.strip()
        assert 1 <= c.start_line <= c.end_line <= max(1, len(lines))
        if LIMIT is not None:
            ref = DocRef("d", "c", "src/file.txt", c.start_line, c.end_line, c.heading)
            # the header has the other half
            assert LIMIT.count(c.text) <= LIMIT.limit - LIMIT.limit // 2
            assert LIMIT.count(f"{ref.header()}\n{c.text}") <= LIMIT.limit
    # every non-blank line of the input appears in some chunk (nothing is lost)
    covered = set()
    for c in chunks:
        covered.update(range(c.start_line, c.end_line + 1))
    for i, line in enumerate(lines, start=1):
        if line.strip():
            assert i in covered, (i, line[:40])


@given(size=st.integers(-5, MAX_CHUNK_TOKENS + 5), overlap=st.integers(-5, MAX_CHUNK_TOKENS + 5))
def test_sizes_are_validated_before_any_work(size: int, overlap: int) -> None:
    valid = MIN_CHUNK_TOKENS <= size <= MAX_CHUNK_TOKENS and 0 <= overlap < size
    if valid:
        check_sizes(size, overlap)
    else:
        with pytest.raises(Invalid):
            chunk_text("some text", counter=TOKENIZER, size=size, overlap=overlap)


def test_overlap_equal_to_size_is_refused_not_looped() -> None:
    with pytest.raises(Invalid, match="overlap_tokens"):
        chunk_text("a " * 10_000, counter=TOKENIZER, size=64, overlap=64)


@pytest.mark.parametrize("overlap", [1024, 2047])
@pytest.mark.parametrize("doc_type", ["text", "markdown", "code"])
def test_a_large_overlap_never_repeats_the_text_more_than_about_twice(
    doc_type: str, overlap: int
) -> None:
    # windows cut short by the character cap (here ~150 tokens of a 2048 chunk) once stepped
    # back the whole 2047-token overlap and moved on by one line: 14x the text, 17 s of CPU
    lines = [f"line {i} " + "lorem ipsum dolor sit amet consectetur " * 12 for i in range(300)]
    text = "\n".join(lines)
    chunks = chunk_text(text, counter=TOKENIZER, size=2048, overlap=overlap, doc_type=doc_type)  # type: ignore[arg-type]
    emitted = sum(len(c.text) for c in chunks)
    assert emitted <= 2.2 * len(text)
    assert chunks[-1].end_line == len(lines)
    single = chunk_text("word " * 20_000, counter=TOKENIZER, size=2048, overlap=overlap)
    assert sum(c.tokens for c in single) <= 2.2 * TOKENIZER.count("word " * 20_000)


def test_windows_of_a_long_section_overlap_by_about_the_overlap() -> None:
    text = "\n".join(f"line {i} " + "alpha beta gamma " * 3 for i in range(200))
    chunks = chunk_text(text, counter=TOKENIZER, size=100, overlap=30, doc_type="text")
    assert len(chunks) > 5
    for a, b in itertools.pairwise(chunks):
        assert b.start_line <= a.end_line  # they share lines
        assert b.start_line > a.start_line  # and always move forward


def test_a_window_is_counted_once_for_its_check_and_its_chunk() -> None:
    """A window's text is counted to check it fits, and its chunk records that count: the same
    text, so one count (two made the chunker count every chunk twice)."""

    class Counting:
        name = "counting"
        calls = 0

        def count(self, text: str) -> int:
            Counting.calls += 1
            return TOKENIZER.count(text)

        def count_many(self, texts: list[str]) -> list[int]:
            return TOKENIZER.count_many(texts)

        def encode(self, text: str) -> object:
            return TOKENIZER.encode(text)

    text = "\n".join(f"line {i} " + "alpha beta gamma " * 3 for i in range(400))
    chunks = chunk_text(
        text, counter=Counting(), size=100, overlap=30, doc_type="text", embed_limit=LIMIT
    )
    assert chunks == chunk_text(
        text, counter=TOKENIZER, size=100, overlap=30, doc_type="text", embed_limit=LIMIT
    )
    assert len(chunks) > 50 and Counting.calls < 1.5 * len(chunks)


def test_a_single_huge_line_is_cut_by_tokens() -> None:
    text = "token " * 3000
    chunks = chunk_text(text, counter=TOKENIZER, size=128, overlap=16)
    assert len(chunks) > 20 and all(c.tokens <= 128 for c in chunks)
    assert all(c.start_line == c.end_line == 1 for c in chunks)


def test_a_long_line_is_cut_with_a_few_counts_a_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """A minified file or a hostile /v1/chunk body is one long line: every window of it was
    found by a binary search over the chunk size, ~9 token counts of its text each (a 228k
    character line took ~4 s). Windows of one line are alike, so the last one's length is
    tried first: the same windows, with a few counts each."""
    from hivemind_gateway.docs.chunking import Chunker

    counted = [0]
    real = Chunker.fits

    def fits(self: Chunker, *args: object, **kwargs: object) -> bool:
        counted[0] += 1
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Chunker, "fits", fits)
    text = " ".join(f"item{i % 97}=value{i % 13};" for i in range(6000))
    chunks = chunk_text(
        text, counter=TOKENIZER, size=512, overlap=64, doc_type="text", embed_limit=LIMIT
    )
    assert len(chunks) > 100 and all(c.tokens <= 512 for c in chunks)
    assert all(LIMIT.count(c.text) <= LIMIT.limit - LIMIT.limit // 2 for c in chunks)
    assert counted[0] <= 4 * len(chunks), counted[0] / len(chunks)
    for a, b in itertools.pairwise(chunks):  # windows still overlap and move forward
        assert text.index(b.text[:40]) < text.index(a.text[:40]) + len(a.text)


def test_markdown_sections_follow_headings_and_ignore_fenced_hashes() -> None:
    text = "# Top\n\nintro\n\n## A\n\n```sh\n# not a heading\necho hi\n```\n\n## B\n\nbee\n"
    chunks = chunk_text(text, counter=TOKENIZER, size=256, overlap=0, doc_type="markdown")
    assert [(c.heading, c.start_line, c.end_line) for c in chunks] == [
        ("Top", 1, 3),
        ("Top > A", 5, 10),
        ("Top > B", 12, 14),
    ]


def test_python_is_cut_by_definition_and_large_classes_by_method() -> None:
    methods = "\n".join(
        f"    def m{i}(self):\n        " + "\n        ".join(f"x{j} = {j}" for j in range(12))
        for i in range(8)
    )
    head = '"""Doc."""\n\nimport os\n\n\n# helper\ndef f():\n    return 1\n\n\n'
    text = f"{head}class Big:\n{methods}\n"
    chunks = chunk_text(text, counter=TOKENIZER, size=128, overlap=0, doc_type="code",
                        language="python")  # fmt: skip
    headings = [c.heading for c in chunks]
    assert headings[0] == "module" and headings[1] == "def f"
    assert chunks[1].start_line == 6  # the comment above belongs to the definition
    assert "class Big > def m0" in headings and "class Big > def m7" in headings


def test_other_languages_are_cut_at_top_level_definitions() -> None:
    js = (
        "import x from './x'\n\n// adds\nexport function add(a, b) {\n  return a + b\n}\n\n"
        "class Box {\n}\n"
    )
    chunks = chunk_text(js, counter=TOKENIZER, size=256, overlap=0, doc_type="code", language="js")
    assert [c.heading for c in chunks] == ["module", "export function add(a, b)", "class Box"]
    assert chunks[1].start_line == 3
    go = "package main\n\nfunc main() {\n}\n\nfunc (s *Srv) Serve() error {\n\treturn nil\n}\n"
    chunks = chunk_text(go, counter=TOKENIZER, size=256, overlap=0, doc_type="code", language="go")
    assert [c.start_line for c in chunks] == [1, 3, 6]


def test_types_come_from_the_extension() -> None:
    assert detect("docs/a.md") == ("markdown", "")
    assert detect("src/x.py") == ("code", "python")
    assert detect("web/app.tsx") == ("code", "js")
    assert detect("notes.txt") == ("text", "")
    assert detect("notes.txt", "markdown") == ("markdown", "")


def test_the_tokenizer_matches_llama_cpp_on_this_repository() -> None:
    from pathlib import Path

    import llama_cpp  # a dependency of the suite: its absence is a failure, not a skip

    from hivemind_common.models_paths import default_llm_gguf

    llama = llama_cpp.Llama(model_path=str(default_llm_gguf()), vocab_only=True, verbose=False)
    root = Path(__file__).resolve().parents[2]
    files = (
        sorted(root.glob("docs/*.md"))[:5]
        + sorted(root.glob("services/gateway/hivemind_gateway/*.py"))[:5]
    )
    samples = [f.read_text() for f in files] + ["12345  tabs\tand ünïcödé 日本 🙂 <|im_end|>"]
    for text in samples:
        assert TOKENIZER.encode(text).ids == llama.tokenize(
            text.encode(), add_bos=False, special=False
        )


def test_code_chunks_carry_the_files_one_line_summary_in_their_header() -> None:
    from hivemind_gateway.docs.chunking import summary
    from hivemind_gateway.search.index import embed_header

    py = '"""The response cache: deterministic chats only.\n\nMore words.\n"""\n\ndef f(): ...\n'
    assert summary(py, "code", "python") == "The response cache: deterministic chats only."
    assert (
        summary("#!/bin/sh\n# Build the images.\nset -e\n", "code", "shell") == "Build the images."
    )
    assert summary("// Adds numbers.\nexport function add() {}\n", "code", "js") == "Adds numbers."
    assert summary("# Title\n\ntext\n", "markdown", "") == ""
    assert summary("def broken(:\n", "code", "python") == ""
    header = embed_header("a/cache.py", "def f", "The response cache")
    assert header == "a/cache.py: def f (The response cache)"
    assert len(embed_header("x" * 500, "h", "c")) == 300


@pytest.mark.parametrize(
    "text, source, doc_type, language",
    [
        ("# a" + " " * 30_000 + "b\n\nbody\n", "a.md", "markdown", ""),
        ("// a" + " " * 30_000 + "b\nint x;\n", "a.js", "code", "js"),
    ],
)
def test_crafted_lines_do_not_backtrack(
    text: str, source: str, doc_type: str, language: str
) -> None:
    # these took minutes to hours with the earlier patterns; now linear: a deadline, not a timing
    done = threading.Event()

    def work() -> None:
        summary(text, doc_type, language)  # type: ignore[arg-type]
        chunk_text(text, counter=TOKENIZER, size=64, overlap=8, doc_type=doc_type,  # type: ignore[arg-type]
                   language=language, embed_limit=LIMIT)  # fmt: skip
        done.set()

    threading.Thread(target=work, daemon=True).start()
    assert done.wait(120), "chunking a crafted line did not finish"


def test_the_embedders_count_is_not_padded() -> None:
    # the model's tokenizer.json pads every text to 128 pieces: a count of "hello" said 128
    assert LIMIT is not None
    assert LIMIT.count("hello") == 3  # [CLS] hello [SEP]
    assert LIMIT.specials() == 2
    assert LIMIT.count_many(["hello world\n", "\n", ""]) == [2, 0, 0]


@pytest.mark.parametrize(
    "path", ["README.md", "services/gateway/hivemind_gateway/docs/chunking.py"]
)
def test_lines_word_pieces_add_up_to_their_joined_texts(path: str) -> None:
    """The chunker sizes a window by summing its lines' word pieces: that must equal the count
    of the joined text (the embedder splits at whitespace, so no piece spans a line break)."""
    assert LIMIT is not None
    lines = split_lines((REPO / path).read_text())
    pieces = LIMIT.count_many(lines)
    for a, b in itertools.pairwise(range(0, len(lines) + 17, 17)):
        joined = "".join(lines[a:b])
        assert sum(pieces[a:b]) + LIMIT.specials() == LIMIT.count(joined), (a, b)


def test_chunks_fill_their_share_of_the_embedders_window() -> None:
    """Prose cut by the embedder's share, not by the (larger) token size: every chunk but the
    last holds close to half the window, and none more; the header costs nothing of it."""
    assert LIMIT is not None
    text = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(400))
    chunks = chunk_text(
        text, counter=TOKENIZER, size=2048, overlap=0, doc_type="code", language="",
        embed_limit=LIMIT,
    )  # fmt: skip
    share = LIMIT.limit - LIMIT.limit // 2
    sizes = [LIMIT.count(c.text) for c in chunks]
    assert all(n <= share for n in sizes), sizes
    assert all(n > share - 20 for n in sizes[:-1]), sizes


def test_line_numbers_count_only_real_line_breaks() -> None:
    """U+2028 (and form feeds, U+0085) are not line breaks for an editor or for Python: a
    chunker that split there cited every later line one off, and cut definitions apart."""
    text = 'x = "a\u2028b"\n\ndef f():\n    return 1\n'
    chunks = chunk_text(text, counter=TOKENIZER, size=256, overlap=0, doc_type="code",
                        language="python")  # fmt: skip
    assert [(c.heading, c.start_line, c.end_line) for c in chunks] == [
        ("module", 1, 1),
        ("def f", 3, 4),
    ]
    assert split_lines("a\r\nb\rc\u2028d\x0ce\n") == ["a\r\n", "b\r", "c\u2028d\x0ce\n"]


def test_two_classes_of_one_name_are_each_cut_by_their_own_members() -> None:
    big = "\n".join(
        f"    def method_{i}(self):\n        return {i}  # " + "filler words here " * 6
        for i in range(30)
    )
    text = f"class A:\n{big}\n\n\nclass B:\n    x = 1\n\n\nclass A:\n    y = 2\n"
    chunks = chunk_text(text, counter=TOKENIZER, size=128, overlap=0, doc_type="code",
                        language="python")  # fmt: skip
    lines = split_lines(text)
    b_line = next(i for i, ln in enumerate(lines, start=1) if ln.startswith("class B"))
    assert any(c.heading.startswith("class A > def method_") for c in chunks)
    # no chunk swallows class B together with the other class A
    for c in chunks:
        assert not (c.start_line <= b_line < c.end_line and c.end_line > b_line + 1), c
    assert [c.heading for c in chunks if c.start_line >= b_line] == ["class B", "class A"]
