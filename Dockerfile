# PSCT service image (CPU; onnxruntime-gpu uses CUDA when the host provides it, e.g. with the
# NVIDIA container toolkit). Research reconstruction, not for diagnostic use.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PSCT_HOME=/var/lib/psct
WORKDIR /opt/psct
COPY pyproject.toml README.md ./
COPY service service
COPY worker worker
COPY model model
COPY psct psct
# Runtime only: no torch in the serving image.
RUN pip install --no-cache-dir '.[postgres]' && useradd --system --home-dir /var/lib/psct psct \
    && mkdir -p /var/lib/psct && chown psct /var/lib/psct
USER psct
VOLUME /var/lib/psct
EXPOSE 8000 11112
# Off loopback, PSCT refuses to serve REST without PSCT_API_KEYS (set it at run time).
ENV PSCT_HTTP_HOST=0.0.0.0 PSCT_DICOM_HOST=0.0.0.0
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=5)"
ENTRYPOINT ["psct"]
CMD ["serve"]
