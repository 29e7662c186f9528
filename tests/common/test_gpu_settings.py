"""GPU settings for the model services: llama.cpp offload in inference's settings and the
hosts registry's GPU node, the rendered units' devices, and the images' GPU build argument.
No GPU is needed: llama.cpp's constructor is the only thing faked (it would load a model)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from hivemind_common.errors import Unprocessable
from hivemind_common.hosts import load_registry, parse_registry

REPO = Path(__file__).resolve().parents[2]


def test_inference_settings_take_an_offload_and_a_model_may_override_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hivemind_inference.settings import GpuOffload, InferenceSettings, ModelSpec

    assert GpuOffload().llama_kwargs() == {}  # CPU by default: nothing passed to llama.cpp
    monkeypatch.setenv("HIVEMIND_N_GPU_LAYERS", "-1")
    monkeypatch.setenv("HIVEMIND_SPLIT_MODE", "row")
    settings = InferenceSettings()
    assert settings.gpu.llama_kwargs() == {"n_gpu_layers": -1, "split_mode": 2, "main_gpu": 0}
    own = ModelSpec(
        name="big", gguf=Path("x.gguf"), gpu={"n_gpu_layers": 20, "tensor_split": [3, 1]}
    )
    assert settings.gpu_for(own).llama_kwargs()["tensor_split"] == [3.0, 1.0]
    plain = ModelSpec(name="small", gguf=Path("y.gguf"))
    assert settings.gpu_for(plain).n_gpu_layers == -1
    monkeypatch.setenv("HIVEMIND_TENSOR_SPLIT", "[3,1]")  # as a rendered unit writes it
    assert InferenceSettings().gpu.tensor_split == [3.0, 1.0]
    for bad in ({"n_gpu_layers": -2}, {"split_mode": "diagonal"}, {"tensor_split": [0, 0]}):
        with pytest.raises(ValidationError):
            GpuOffload(**bad)


def test_the_model_copy_hands_the_offload_to_llama_cpp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from hivemind_inference import tracing
    from hivemind_inference.engine import ModelCopy
    from hivemind_inference.settings import GpuOffload

    seen: dict[str, Any] = {}

    class FakeLlama:  # records what llama.cpp would get, then stops the load there
        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)
            raise ValueError("not loading a model in this test")

    monkeypatch.setattr(tracing, "TracingLlama", FakeLlama)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    copy = ModelCopy(
        name="m",
        version="base",
        gguf=gguf,
        lora=None,
        n_ctx=512,
        threads=2,
        gpu=GpuOffload(n_gpu_layers=-1, split_mode="layer", tensor_split=[1, 1]),
    )
    with pytest.raises(Unprocessable):
        copy.load()
    assert seen["n_gpu_layers"] == -1 and seen["split_mode"] == 1
    assert seen["tensor_split"] == [1.0, 1.0] and seen["model_path"] == str(gguf)
    seen.clear()
    with pytest.raises(Unprocessable):
        ModelCopy(name="m", version="base", gguf=gguf, lora=None, n_ctx=512, threads=2).load()
    assert "n_gpu_layers" not in seen


def test_the_registry_gpu_node_sets_inference_and_trainer_env() -> None:
    reg = load_registry(REPO / "hosts.yaml")
    env = reg.gpu_env("inference", "homelab")
    assert env["HIVEMIND_GPU_RUNTIME"] == "cuda"
    assert env["HIVEMIND_N_GPU_LAYERS"] == "-1" and env["HIVEMIND_SPLIT_MODE"] == "layer"
    assert reg.gpu_env("trainer", "homelab") == {"HIVEMIND_GPU_RUNTIME": "cuda"}
    assert reg.gpu_env("gateway", "homelab") == {}
    assert reg.gpu_env("inference", "local") == {}  # no gpu block: CPU


def test_gpu_settings_need_the_gpu_label_and_valid_values() -> None:
    text = (REPO / "hosts.yaml").read_text()
    with pytest.raises(ValueError, match="gpu label"):
        parse_registry(text.replace("labels: [gpu]\n", "labels: [model]\n", 1))
    with pytest.raises(ValueError):
        parse_registry(text.replace("runtime: cuda", "runtime: metal"))


def test_rendered_units_pass_the_gpu_into_inference_and_trainer_only() -> None:
    from hivemind_cli.render import render_node

    reg = load_registry(REPO / "hosts.yaml")
    files = render_node(reg, profile="homelab", node="aurora")
    inference = files["hivemind-inference.container"]
    assert "AddDevice=nvidia.com/gpu=all" in inference
    assert "Environment=HIVEMIND_N_GPU_LAYERS=-1" in inference and '"' not in inference
    assert "AddDevice=nvidia.com/gpu=all" in files["hivemind-trainer.container"]
    assert "AddDevice" not in files["hivemind-exporter.container"]
    rocm = parse_registry(
        (REPO / "hosts.yaml").read_text().replace("runtime: cuda", "runtime: rocm")
    )
    trainer = render_node(rocm, profile="homelab", node="aurora")["hivemind-trainer.container"]
    assert "AddDevice=/dev/kfd" in trainer and "AddDevice=/dev/dri" in trainer


def test_the_images_take_a_gpu_build_argument() -> None:
    base = (REPO / "deploy/images/service-base.Containerfile").read_text()
    assert "ONBUILD ARG GPU=cpu" in base and 'hivemind-gpu-setup "$GPU"' in base
    assert base.index("ONBUILD ARG GPU=cpu") < base.index("ONBUILD USER hivemind")
    build = (REPO / "deploy/images/build.sh").read_text()
    assert 'inference|trainer) extra=(--build-arg "GPU=$GPU")' in build
    script = REPO / "deploy/images/gpu_setup.sh"
    assert subprocess.run(["sh", str(script), "cpu"], check=False).returncode == 0
    bad = subprocess.run(["sh", str(script), "tpu"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "cpu, cuda or rocm" in bad.stderr
