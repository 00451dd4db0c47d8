# syntax=docker/dockerfile:1
# xlc in a container: the default model is converted at build time, so a run needs no network.
#
#   CPU (default target):  docker build -t xlc:cpu .
#   CUDA:                  docker build --target cuda -t xlc:cuda .
#   run:                   docker run --rm -v "$PWD/data:/data" xlc:cpu xlc selftrain --train ... --out runs/de
#
# Both final images hold only a virtual environment and the converted model on python-slim, and
# run as the unprivileged user `xlc` (uid 1000) in /data, the folder to mount.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    XLC_CACHE=/opt/xlc/cache \
    HF_HOME=/tmp/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
RUN useradd --create-home --uid 1000 --user-group xlc

# ---- build stages: install into /opt/venv, convert the default model into /opt/xlc/cache ----
FROM base AS build
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY xlc ./xlc

FROM build AS build-cpu
ARG TORCH_VERSION=2.13.0
# Torch first, from the CPU index: the CPU wheel is ~200 MB where PyPI's Linux wheel pulls CUDA.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}" \
    && pip install --no-cache-dir . \
    && python -c "from xlc import default_model; print(default_model.ensure_converted())" \
    && xlc --version

FROM build AS build-cuda
ARG TORCH_VERSION=2.13.0
# PyPI's Linux x86-64 torch wheels are CUDA builds (CUDA libraries as nvidia-* wheels); for
# another CUDA version pass --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cuXYZ.
ARG TORCH_INDEX=https://pypi.org/simple
ARG ORT_GPU_VERSION=1.31.1
# onnxruntime (CPU, required by xlc and by the tokenizer's package) and onnxruntime-gpu both
# install the module `onnxruntime`: remove both, then put back the GPU build alone.
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}" \
    && pip install --no-cache-dir "./[gpu]" "onnxruntime-gpu[cuda,cudnn]==${ORT_GPU_VERSION}" \
    && pip uninstall -y onnxruntime onnxruntime-gpu \
    && pip install --no-cache-dir --no-deps "onnxruntime-gpu==${ORT_GPU_VERSION}" \
    && python -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers()" \
    && python -c "from xlc import default_model; print(default_model.ensure_converted())" \
    && xlc --version

# ---- CUDA image: docker build --target cuda -t xlc:cuda . ; docker run --gpus all ... ----
FROM base AS cuda
ENV XLC_DEVICE=cuda \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=build-cuda /opt/venv /opt/venv
COPY --from=build-cuda /opt/xlc /opt/xlc
# Let the dynamic loader find the CUDA/cuDNN libraries that came as pip wheels (ONNX Runtime
# loads them by name; torch finds its own).
RUN find /opt/venv/lib -type d -path "*/site-packages/nvidia/*" -name lib \
        > /etc/ld.so.conf.d/xlc-nvidia-wheels.conf \
    && ldconfig
USER 1000:1000
WORKDIR /data
CMD ["xlc", "--help"]

# ---- CPU image (the default target) ----
FROM base AS cpu
COPY --from=build-cpu /opt/venv /opt/venv
COPY --from=build-cpu /opt/xlc /opt/xlc
USER 1000:1000
WORKDIR /data
CMD ["xlc", "--help"]
