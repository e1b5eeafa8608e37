# syntax=docker/dockerfile:1
# The image that tuner's workers and dashboard run (docker-compose.yml builds it).
#
#   docker build -t tuner:latest .                                  # CUDA torch, for GPU hosts
#   docker build -t tuner:cpu --build-arg TORCH_VARIANT=cpu .       # CPU-only torch, far smaller
#
# Two stages: `build` installs torch and tuner into a virtual environment; the final stage
# copies only that environment onto the same slim Python, so it carries no compiler, no pip
# cache and no source tree. The CUDA build needs no CUDA base image: PyPI's torch wheel brings
# the CUDA runtime libraries, and the NVIDIA container toolkit mounts the host's driver.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ARG TORCH_VARIANT=cuda
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, from the index that matches the variant; tuner's `torch>=...` then finds it.
RUN case "$TORCH_VARIANT" in \
      cuda) pip install "torch==${TORCH_VERSION}" ;; \
      cpu) pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu ;; \
      *) echo "TORCH_VARIANT must be cuda or cpu, got '${TORCH_VARIANT}'" >&2; exit 2 ;; \
    esac

# The dependencies change less often than the code: install them from pyproject.toml with a
# placeholder package, so that editing tuner/ rebuilds only the last layer.
WORKDIR /src
COPY pyproject.toml README.md ./
RUN mkdir tuner && touch tuner/__init__.py \
 && if [ "$TORCH_VARIANT" = cuda ]; then extras="[gpu]"; else extras=""; fi \
 && pip install ".${extras}" \
 && pip uninstall --yes tuner \
 && rm -rf build tuner
COPY tuner ./tuner
RUN pip install --no-deps . && tuner --help > /dev/null


FROM python:${PYTHON_VERSION}-slim-bookworm
# CUDA_DEVICE_ORDER: number GPUs as nvidia-smi does (GPU slots are named by its indices).
# NVIDIA_DRIVER_CAPABILITIES: compute for CUDA, utility for nvidia-smi.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CUDA_DEVICE_ORDER=PCI_BUS_ID \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    TUNER_HOME=/home/tuner/data
RUN useradd --create-home --uid 10001 --user-group tuner \
 && install --directory --owner=tuner --group=tuner /home/tuner/data /var/lib/tuner/gpu-slots
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY search_spaces ./search_spaces
USER tuner
CMD ["tuner", "--help"]
