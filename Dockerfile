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
#
# One stage on purpose: a builder stage's venv copied into a runtime stage stores PyTorch's
# gigabytes twice, and each committed layer is written once more while it is committed, which
# is more disk than a CI machine may have. Nothing here needs a compiler, so nothing is left out
# by installing in place.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
ARG VARIANT=cuda
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG IMAGENET_WEIGHTS=download
# pip reads it from the environment; empty: the index alone
ARG PIP_FIND_LINKS=""
LABEL org.opencontainers.image.title="unconv" \
      org.opencontainers.image.description="Deconvnet visualiser, auto-encoder and VAE over HTTP"
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    TORCH_HOME=/opt/torch \
    UNCONV_HOST=0.0.0.0 \
    UNCONV_PORT=8000 \
    UNCONV_CHECKPOINT_DIR=/checkpoints \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN groupadd --system --gid 10001 unconv \
    && useradd --system --uid 10001 --gid unconv --home-dir /app --shell /usr/sbin/nologin unconv \
    && mkdir -p /checkpoints /app /opt/torch \
    && chown unconv:unconv /checkpoints /app \
    && python -m venv /opt/venv
WORKDIR /src
# the dependency layers first, so that a change to the source rebuilds only the last steps
COPY pyproject.toml ./
COPY requirements ./requirements
# The pinned serving dependencies (make lock; a complete lock, hence --no-deps), less Triton: it
# only serves torch.compile, which the service does not use, and it is 0.9 GB. The CUDA
# libraries go first, in a layer of their own: a layer briefly takes about three times its size
# on the builder's disk while it is committed, so two layers need less room than one. The CPU
# variant takes the same torch release from PyTorch's CPU index and no CUDA libraries. /tmp on
# tmpfs: pip's downloads never reach the disk.
RUN --mount=type=tmpfs,target=/tmp \
    case "$VARIANT" in \
        cuda) grep -E '^(nvidia-|cuda-)' requirements/serve.txt > /tmp/cuda.txt \
              && pip install --no-deps -r /tmp/cuda.txt ;; \
        cpu) ;; \
        *) echo "VARIANT is cuda or cpu, not $VARIANT" >&2; exit 1 ;; \
    esac
RUN --mount=type=tmpfs,target=/tmp \
    if [ "$VARIANT" = "cpu" ]; then \
        pip install -r requirements/torch.in --index-url "$TORCH_CPU_INDEX"; \
    fi \
    && sed -E '/^(nvidia-|cuda-|triton=)/d' requirements/serve.txt > /tmp/rest.txt \
    && pip install --no-deps -r /tmp/rest.txt
# fetch the ImageNet weights at build time so that the container works offline
RUN if [ "$IMAGENET_WEIGHTS" = "download" ]; then \
        python -c "from torchvision import models; \
models.alexnet(weights='IMAGENET1K_V1'); models.vgg16(weights='IMAGENET1K_V1')"; \
    elif [ "$IMAGENET_WEIGHTS" != "skip" ]; then \
        echo "IMAGENET_WEIGHTS is download or skip, not $IMAGENET_WEIGHTS" >&2; exit 1; \
    fi
COPY service ./service
COPY training ./training
RUN pip install --no-deps . && rm -rf /src/build
WORKDIR /app
USER 10001:10001
VOLUME ["/checkpoints"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["python", "-m", "service"]
