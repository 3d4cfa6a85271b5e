# syntax=docker/dockerfile:1.7
# PSCT images. Research reconstruction, not for diagnostic use.
#
#   docker build --target cpu -t psct:cpu .   gateway, DICOM listener, CPU workers, `psct serve`
#   docker build --target gpu -t psct:gpu .   GPU workers: onnxruntime-gpu with CUDA 13 and cuDNN 9
#                                             from PyPI; the host needs the NVIDIA driver (>= 580)
#                                             and the NVIDIA container toolkit
#
# onnxruntime and onnxruntime-gpu provide the same module: each image installs exactly one (the
# `cpu` or the `gpu` extra). Neither holds torch: training and export need `pip install '.[train]'`.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- 1. the psct wheel: code, migrations and model weights, each weight checked against its sidecar
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service service
COPY worker worker
COPY model model
COPY psct psct
RUN python -c "import hashlib, json, pathlib, sys; \
bad = [str(p) for p in pathlib.Path('model/weights').glob('*.onnx') \
       if hashlib.sha256(p.read_bytes()).hexdigest() != json.loads(p.with_suffix('.json').read_text())['sha256']]; \
sys.exit(f'weights that do not match their sidecar: {bad}' if bad else 0)"
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- 2. what both runtime images share: a venv, a non-root user, the data folder, health check
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/psct/bin:$PATH \
    PSCT_HOME=/var/lib/psct PSCT_LOG_FORMAT=json \
    PSCT_HTTP_HOST=0.0.0.0 PSCT_DICOM_HOST=0.0.0.0 PSCT_METRICS_HOST=0.0.0.0
RUN python -m venv /opt/psct \
    && useradd --system --uid 10001 --home-dir /var/lib/psct psct \
    && mkdir -p /var/lib/psct && chown psct /var/lib/psct
VOLUME /var/lib/psct
# REST, DICOM, and a listener's or worker's own /metrics /healthz /readyz.
EXPOSE 8000 11112 9464
# Off loopback, PSCT refuses to serve REST without PSCT_API_KEYS (set it at run time).
# HEALTHCHECK_URL: what the health check asks; a listener or worker sets its metrics port's /readyz.
ENV HEALTHCHECK_URL=http://127.0.0.1:8000/readyz
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]
ENTRYPOINT ["psct"]
CMD ["serve"]

# --- 3a. CPU image
FROM base AS cpu
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip --no-cache-dir --disable-pip-version-check install "$(ls /wheels/psct-*.whl)[cpu,postgres]"
# The weights in the image are the ones the sidecar describes, or the image does not build; every
# `psct serve` and `psct worker` checks them again at start and refuses to run on a mismatch.
RUN python -c "from service.readiness import model_check; from service.settings import Settings; \
import sys; v = model_check(Settings()); print('model:', v); sys.exit(v != 'ok')"
USER psct

# --- 3b. GPU image (same Python, CUDA libraries from the nvidia-* wheels of the `gpu` extra)
FROM base AS gpu
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip --no-cache-dir --disable-pip-version-check install "$(ls /wheels/psct-*.whl)[gpu,postgres]"
RUN python -c "from service.readiness import model_check; from service.settings import Settings; \
import sys; v = model_check(Settings()); print('model:', v); sys.exit(v != 'ok')"
USER psct
CMD ["worker"]
