# syntax=docker/dockerfile:1
# unconv service image.
#   docker build -t unconv .                      # CUDA (default): PyTorch's CUDA wheels carry
#                                                 # the CUDA runtime; the host needs the driver
#                                                 # and the NVIDIA container toolkit
#   docker build --build-arg VARIANT=cpu -t unconv:cpu .   # CPU-only PyTorch, a smaller image
# Checkpoints come from a volume at /checkpoints; AlexNet and VGG-16 weights are baked in.
# Offline builds (only a package registry reachable; README "Deploying"):
#   --build-arg PYTHON_IMAGE=...        a local base image with Python 3.11
#   --build-arg IMAGENET_WEIGHTS=skip   no weights download: /models lists AlexNet and VGG-16
#                                       as unavailable until they are mounted at /opt/torch
#   --build-arg PIP_FIND_LINKS=DIR      local wheels (with `-v DIR:DIR:ro`), PyPI for the rest

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG VARIANT=cuda
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG IMAGENET_WEIGHTS=download
# pip reads it from the environment; empty: the index alone
ARG PIP_FIND_LINKS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN python -m venv /opt/venv
WORKDIR /src
# the dependency layers first, so that a change to the source rebuilds only the last steps
COPY pyproject.toml ./
COPY requirements ./requirements
# the pinned serving dependencies (make lock); the CPU variant takes the same torch release
# from PyTorch's CPU index and leaves out the CUDA libraries
RUN if [ "$VARIANT" = "cpu" ]; then \
        pip install -r requirements/torch.in --index-url "$TORCH_CPU_INDEX" \
        && sed -E '/^(nvidia-|triton|cuda-)/d' requirements/serve.txt > /tmp/requirements.txt; \
    else \
        cp requirements/serve.txt /tmp/requirements.txt; \
    fi \
    && pip install -r /tmp/requirements.txt
# fetch the ImageNet weights at build time so that the container works offline
ENV TORCH_HOME=/opt/torch
RUN mkdir -p /opt/torch \
    && if [ "$IMAGENET_WEIGHTS" = "download" ]; then \
        python -c "from torchvision import models; \
models.alexnet(weights='IMAGENET1K_V1'); models.vgg16(weights='IMAGENET1K_V1')"; \
    elif [ "$IMAGENET_WEIGHTS" != "skip" ]; then \
        echo "IMAGENET_WEIGHTS is download or skip, not $IMAGENET_WEIGHTS" >&2; exit 1; \
    fi
# the project as a wheel, installed in the runtime stage: the venv copied there holds only the
# dependencies, so that a change to the source does not copy its 5 GB again
COPY service ./service
COPY training ./training
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="unconv" \
      org.opencontainers.image.description="Deconvnet visualiser, auto-encoder and VAE over HTTP"
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    TORCH_HOME=/opt/torch \
    UNCONV_HOST=0.0.0.0 \
    UNCONV_PORT=8000 \
    UNCONV_CHECKPOINT_DIR=/checkpoints \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN groupadd --system --gid 10001 unconv \
    && useradd --system --uid 10001 --gid unconv --home-dir /app --shell /usr/sbin/nologin unconv \
    && mkdir -p /checkpoints /app \
    && chown unconv:unconv /checkpoints /app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/torch /opt/torch
# COPY, not RUN --mount=from: buildah's cache key ignores a mount's content (a stale project)
COPY --from=builder /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-deps --no-index /tmp/wheels/*.whl
WORKDIR /app
USER 10001:10001
VOLUME ["/checkpoints"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["python", "-m", "service"]
