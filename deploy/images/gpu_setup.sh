#!/bin/sh
# Run by the service base's ONBUILD step in every service build:  gpu_setup.sh <cpu|cuda|rocm>
# cpu (the default) changes nothing. cuda / rocm swap in the accelerator builds of what the
# service has installed, at the same versions as the wheelhouse's CPU builds:
#   torch (trainer, exporter)  -> PyTorch's CUDA / ROCm wheel ($TORCH_INDEX_CUDA / _ROCM), plus
#                                 bitsandbytes (QLoRA, 8-bit AdamW; ROCm from 0.45)
#   llama-cpp-python (inference, exporter) -> rebuilt with GGML_CUDA / GGML_HIP (the base image
#                                 must carry the toolkit and a compiler: a *-devel image)
set -eu
gpu=${1:-cpu}
case "$gpu" in
  cpu) exit 0 ;;
  cuda) index=${TORCH_INDEX_CUDA:-https://download.pytorch.org/whl/cu128}; ggml=-DGGML_CUDA=on ;;
  rocm) index=${TORCH_INDEX_ROCM:-https://download.pytorch.org/whl/rocm6.4}; ggml=-DGGML_HIP=on ;;
  *) echo "GPU must be cpu, cuda or rocm (got $gpu)" >&2; exit 2 ;;
esac
py=/opt/hivemind/bin/python
pip="$py -m pip install --no-cache-dir --disable-pip-version-check"
version() { "$py" -c "import importlib.metadata as m; print(m.version('$1').split('+')[0])" 2>/dev/null; }
torch=$(version torch || true)
if [ -n "$torch" ]; then
  $pip --force-reinstall --no-deps --index-url "$index" "torch==$torch"
  $pip "bitsandbytes>=0.45"
fi
llama=$(version llama-cpp-python || true)
if [ -n "$llama" ]; then
  CMAKE_ARGS="$ggml" $pip --force-reinstall --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$llama"
fi
echo "gpu_setup: $gpu (torch ${torch:-none}, llama-cpp-python ${llama:-none})"
