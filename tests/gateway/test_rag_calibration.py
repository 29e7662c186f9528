"""The gate's per-model calibration: the sweep, the file, and the gateway reading it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hivemind_gateway.rag.calibration import calibration_path, load_calibration
from hivemind_gateway.rag.evaluation import calibrate, evaluate, load_eval_set
from hivemind_gateway.rag.gate import gate_config
from hivemind_gateway.rag.scoring import GateConfig
from hivemind_gateway.settings import GatewaySettings
from support.embedding import shared_embedding_url

EVAL_SET = Path(__file__).resolve().parents[1] / "data" / "retrieval_eval.json"


def _state(data_dir: Path, model: str | None, **settings: object) -> SimpleNamespace:
    embedder = SimpleNamespace(model_id=model)
    return SimpleNamespace(  # the fields of GatewayState that gate_config reads
        settings=GatewaySettings(data_dir=data_dir, **settings),
        search=SimpleNamespace(embedder=embedder),
        rag_gate=None,
        rag_gate_model=None,
    )


def test_the_gateway_reads_the_calibration_of_the_serving_model(tmp_path: Path) -> None:
    path = calibration_path(tmp_path, "bge-small/en v1.5")
    path.parent.mkdir(parents=True)
    gate = {"inject_threshold": 0.62, "min_dense": 0.55, "distinct_gap": 0.2, "margin": 9}
    path.write_text(json.dumps({"model": "bge-small/en v1.5", "gate": gate}))
    assert load_calibration(tmp_path, "bge-small/en v1.5") == {
        "inject_threshold": 0.62,
        "min_dense": 0.55,
        "distinct_gap": 0.2,
    }  # only the calibrated fields
    cfg = gate_config(_state(tmp_path, "bge-small/en v1.5"))
    assert (cfg.inject_threshold, cfg.min_dense, cfg.margin) == (0.62, 0.55, GateConfig().margin)
    assert gate_config(_state(tmp_path, "all-MiniLM-L6-v2")) == GateConfig()
    overridden = gate_config(_state(tmp_path, "bge-small/en v1.5", rag_inject_threshold=0.7))
    assert overridden.inject_threshold == 0.7 and overridden.min_dense == 0.55
    path.write_text("{not json")
    assert load_calibration(tmp_path, "bge-small/en v1.5") == {}


def test_a_new_model_gets_its_gate_recomputed(tmp_path: Path) -> None:
    state = _state(tmp_path, "model-a")
    assert gate_config(state) == GateConfig()
    path = calibration_path(tmp_path, "model-b")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"gate": {"inject_threshold": 0.5}}))
    state.search.embedder.model_id = "model-b"
    assert gate_config(state).inject_threshold == 0.5


@pytest.fixture(scope="module")
def encode() -> Callable[[list[str]], np.ndarray]:
    from hivemind_embedding.encoder import DEFAULT_MODEL_ID, SentenceEncoder, default_model_dir

    encoder = SentenceEncoder.load(default_model_dir(), model_id=DEFAULT_MODEL_ID)
    return encoder.encode


def test_calibration_finds_a_gate_that_holds_on_its_set(
    encode: Callable[[list[str]], np.ndarray],
) -> None:
    data = load_eval_set(EVAL_SET)["second_domain"]
    result = calibrate(data, encode)
    assert result["right_fact_injected"] >= 0.9 and result["unanswerable_injected"] <= 0.1
    low, high = result["equally_good_shifts"]
    assert low <= result["shift"] <= high
    again = evaluate(data, encode, cfg=GateConfig(**result["gate"]))
    assert again["right_fact_injected"] == result["right_fact_injected"]


def test_the_calibrate_command_writes_the_serving_models_file(
    tmp_path: Path, internal_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from hivemind_cli.main import app

    data = load_eval_set(EVAL_SET)["chat_domain"]
    path = tmp_path / "set.json"
    path.write_text(json.dumps(data))
    monkeypatch.setenv("HIVEMIND_EMBEDDING_URL", shared_embedding_url(internal_token))
    monkeypatch.setenv("HIVEMIND_INTERNAL_TOKEN", internal_token)
    monkeypatch.setenv("HIVEMIND_DATA_DIR", str(tmp_path / "var"))
    result = CliRunner().invoke(app, ["rag", "calibrate", str(path)])
    assert result.exit_code == 0, result.output
    written = json.loads(calibration_path(tmp_path / "var", "all-MiniLM-L6-v2").read_text())
    assert written["model"] == "all-MiniLM-L6-v2" and written["eval_set"] == str(path)
    assert set(written["gate"]) >= {"inject_threshold", "distinct_gap"}
    assert load_calibration(tmp_path / "var", "all-MiniLM-L6-v2") == written["gate"]


def test_a_malformed_set_is_a_clear_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from hivemind_cli.main import app

    monkeypatch.setenv("HIVEMIND_EMBEDDING_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("HIVEMIND_DATA_DIR", str(tmp_path / "var"))
    path = tmp_path / "set.json"
    for text, said in (
        ('{"facts": [{"key": "a"}], "queries": [], "unanswerable": []}', "facts[0] needs 'value'"),
        ('{"facts": [], "queries": [{"query": "q"}], "unanswerable": []}', "needs 'expected'"),
        ("[1, 2]", "expected an object"),
        ("{nope", "is not JSON"),
    ):
        path.write_text(text)
        with pytest.raises(ValueError, match=re.escape(said)):
            load_eval_set(path)
        result = CliRunner().invoke(app, ["rag", "calibrate", str(path)])
        assert result.exit_code == 1 and said in result.output, result.output


def test_the_calibration_file_is_replaced_whole(tmp_path: Path) -> None:
    from hivemind_gateway.rag.calibration import write_calibration

    for threshold in (0.4, 0.5):
        path = write_calibration(tmp_path, "m", {"gate": {"inject_threshold": threshold}}, "s")
        assert load_calibration(tmp_path, "m") == {"inject_threshold": threshold}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
