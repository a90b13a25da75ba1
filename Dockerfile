# Adapter Studio: the web studio with its embedded worker (or, with another command, a worker alone).
#
#   GPU image (default): docker build -t adapter-studio .
#   CPU-only image:      docker build --build-arg BASE=debian:bookworm-slim \
#                          --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t adapter-studio:cpu .
#   Run:                 docker run --gpus all -p 7860:7860 -v studio:/data -e STUDIO_AUTH=me:secret adapter-studio
#
# The GPU image takes torch 2.13.0 from PyPI, whose Linux build carries its own CUDA libraries;
# the CUDA base adds the runtime pieces bitsandbytes looks for. The host needs only the driver.
ARG BASE=nvidia/cuda:13.0.1-runtime-ubuntu24.04
FROM ${BASE}
ARG TORCH_INDEX_URL=""
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 TORCH_INDEX_URL=${TORCH_INDEX_URL}
RUN apt-get update -q && apt-get install -y -q --no-install-recommends python3 python3-venv python3-pip \
    cmake g++ make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt requirements-test.txt ./
COPY scripts/setup.sh scripts/setup.sh
RUN bash scripts/setup.sh && rm -rf /root/.cache/pip
COPY . .
# STUDIO_HOME (database, queue, prepared models, datasets, adapters) lives on the volume.
# The container listens on all its addresses: set STUDIO_AUTH when you publish the port.
ENV STUDIO_HOME=/data STUDIO_HOST=0.0.0.0 STUDIO_PORT=7860
VOLUME /data
EXPOSE 7860
CMD [".venv/bin/python", "app.py"]
