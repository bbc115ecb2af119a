# syntax=docker/dockerfile:1
# The semroute gateway (`semroute serve`): stateless, so it scales out behind a Service/HPA.
# From the repository root:
#   docker build -f deploy/gateway.Dockerfile -t semroute-gateway .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# The project's runtime dependencies only: torch and the training tools are the [export] extra.
COPY pyproject.toml README.md ./
COPY control/ control/
COPY export/ export/
COPY modelspec/ modelspec/
COPY config/ config/
# xds-protos (the Envoy processor's stubs) ships an older opentelemetry/proto copy: the real
# package's files go back on top, or the OTLP exporter cannot import.
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --force-reinstall --no-deps \
       "opentelemetry-proto==$(python -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')" \
    && useradd --system --uid 10001 --no-create-home semroute
USER 10001

EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["semroute", "serve"]
CMD ["--config", "/etc/semroute/config.yaml", "--host", "0.0.0.0", "--port", "8080", "--triton-url", "triton:8001", "--workers", "2"]
