# xlc in a container: the default model is converted at build time, so a run needs no network.
#
#   CPU (default target):  docker build -t xlc:cpu .
#   CUDA:                  docker build --target cuda -t xlc:cuda .
#   run:                   docker run --rm -v "$PWD/data:/data" xlc:cpu xlc selftrain --train ... --out runs/de
#
# Both final images hold only a virtual environment and the converted model (made readable to
# all: safetensors writes its file 0600) on the base image, and run as the unprivileged user
# `xlc` (uid 1000) in /data, the folder to mount. The build needs BuildKit (the default builder
# since Docker 23). Optional build-time wiring (README, "Docker"), none of it kept in the images:
#   --build-arg BASE_IMAGE=...   another Debian 12 base; one without Python gets Debian's 3.11
#   wheels/ (build context)      local wheels pip prefers to the index, e.g. the CPU torch wheel
#   --secret id=pip-cert,src=CA_BUNDLE --build-arg PIP_CERT=/run/secrets/pip-cert
#                                a CA bundle for pip (behind a TLS-intercepting proxy)

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    XLC_CACHE=/opt/xlc/cache \
    HF_HOME=/tmp/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --create-home --uid 1000 --user-group xlc

# ---- build stages: install into /opt/venv, convert the default model into /opt/xlc/cache ----
FROM base AS build
ENV PIP_FIND_LINKS=/wheels
RUN python3 -m venv /opt/venv
WORKDIR /src

FROM scratch AS source
COPY pyproject.toml README.md /src/
COPY xlc /src/xlc
COPY plugins/xlc-classprior /src/plugins/xlc-classprior

FROM build AS build-cpu
ARG PIP_CERT
ARG TORCH_VERSION=2.13.0
# Torch first, from the CPU index: the CPU wheel is ~200 MB where PyPI's Linux wheel pulls CUDA.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN --mount=type=bind,source=wheels,target=/wheels --mount=type=secret,id=pip-cert \
    pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}" \
    && python -c "import sys, torch; sys.exit(torch.version.cuda and f'torch {torch.__version__} is a CUDA build')"
# xlc's dependencies from pyproject.toml alone: a change to the code or the README keeps this layer.
COPY pyproject.toml ./
RUN --mount=type=bind,source=wheels,target=/wheels --mount=type=secret,id=pip-cert \
    python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt
COPY --from=source /src /src
RUN --mount=type=bind,source=wheels,target=/wheels --mount=type=secret,id=pip-cert \
    pip install --no-cache-dir . ./plugins/xlc-classprior \
    && python -c "from xlc import default_model; print(default_model.ensure_converted())" \
    && chmod -R a+rX /opt/xlc \
    && xlc --version

FROM build AS build-cuda
ARG PIP_CERT
ARG TORCH_VERSION=2.13.0
# PyPI's Linux x86-64 torch wheels are CUDA builds (CUDA libraries as nvidia-* wheels); for
# another CUDA version pass --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cuXYZ.
ARG TORCH_INDEX=https://pypi.org/simple
ARG ORT_GPU_VERSION=1.31.1
RUN --mount=type=bind,source=wheels,target=/wheels --mount=type=secret,id=pip-cert \
    pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
COPY --from=source /src /src
# onnxruntime (CPU, required by xlc and by the tokenizer's package) and onnxruntime-gpu both
# install the module `onnxruntime`: remove both, then put back the GPU build alone.
RUN --mount=type=bind,source=wheels,target=/wheels --mount=type=secret,id=pip-cert \
    pip install --no-cache-dir "./[gpu]" ./plugins/xlc-classprior "onnxruntime-gpu[cuda,cudnn]==${ORT_GPU_VERSION}" \
    && pip uninstall -y onnxruntime onnxruntime-gpu \
    && pip install --no-cache-dir --no-deps "onnxruntime-gpu==${ORT_GPU_VERSION}" \
    && python -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers()" \
    && python -c "from xlc import default_model; print(default_model.ensure_converted())" \
    && chmod -R a+rX /opt/xlc \
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
