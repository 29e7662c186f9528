"""The quick GGUF header reader: the same values gguf's own reader gives, and clear errors."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from hivemind_common.gguf_meta import read_metadata
from hivemind_common.models_paths import default_llm_gguf

TOKENIZER_KEYS = ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges")


def test_the_shipped_models_tokenizer_reads_as_ggufs_own_reader_reads_it() -> None:
    path = default_llm_gguf()
    reader = gguf.GGUFReader(str(path))
    quick = read_metadata(path, TOKENIZER_KEYS)
    assert set(quick) == set(TOKENIZER_KEYS)
    for key in TOKENIZER_KEYS:
        assert quick[key] == reader.fields[key].contents(), key
    assert len(quick["tokenizer.ggml.tokens"]) == 49152
    everything = read_metadata(path)
    assert everything["general.architecture"] == "llama"
    assert everything.keys() == {k for k in reader.fields if not k.startswith("GGUF.")}


def _write(path: Path) -> None:
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_uint8("t.u8", 7)
    writer.add_int16("t.i16", -3)
    writer.add_uint64("t.u64", 2**40)
    writer.add_float32("t.f32", 0.5)
    writer.add_float64("t.f64", -1.25)
    writer.add_bool("t.bool", True)
    writer.add_string("t.str", "naïve 日本語")
    writer.add_array("t.ints", [1, 2, 3])
    writer.add_array("t.strs", ["a", "", "ç"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()


def test_every_value_type_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    _write(path)
    meta = read_metadata(path)
    assert meta["general.architecture"] == "llama"
    assert (meta["t.u8"], meta["t.i16"], meta["t.u64"]) == (7, -3, 2**40)
    assert (meta["t.f32"], meta["t.f64"], meta["t.bool"]) == (0.5, -1.25, True)
    assert meta["t.str"] == "naïve 日本語"
    assert meta["t.ints"] == [1, 2, 3] and meta["t.strs"] == ["a", "", "ç"]
    assert read_metadata(path, ["t.str", "t.nothing"]) == {"t.str": "naïve 日本語"}


def test_a_damaged_or_foreign_file_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    _write(path)
    whole = path.read_bytes()
    for cut in (3, 10, 30, len(whole) - 5):
        broken = tmp_path / f"cut{cut}.gguf"
        broken.write_bytes(whole[:cut])
        with pytest.raises(ValueError):
            read_metadata(broken)
    foreign = tmp_path / "x.gguf"
    foreign.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(ValueError, match="not a GGUF"):
        read_metadata(foreign)
    huge = tmp_path / "huge.gguf"  # a string length far past the end of the file
    huge.write_bytes(whole[:24] + (2**62).to_bytes(8, "little") + whole[32:])
    with pytest.raises(ValueError):
        read_metadata(huge)
