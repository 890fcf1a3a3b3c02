# syntax=docker/dockerfile:1
# inference-gateway-ext-proc: the endpoint picker (`extproc serve`) and the vLLM simulator
# (`extproc sim`) in one image.
#   docker build -t inference-gateway-ext-proc:dev .
#   docker run --rm inference-gateway-ext-proc:dev --help

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: install the package and its dependencies into a self-contained venv ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Metadata first (README.md is optional: the glob copies it when present).
COPY pyproject.toml README.m[d] ./
COPY src ./src
RUN pip install --upgrade pip && pip install .

# ---- runtime: the venv only, as an unprivileged user ----
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="inference-gateway-ext-proc" \
      org.opencontainers.image.description="Endpoint picker for LLM inference gateways (Envoy ext_proc)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 extproc \
 && useradd --system --uid 10001 --gid extproc --no-create-home --shell /usr/sbin/nologin extproc
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
# ext_proc gRPC, gRPC health, Prometheus metrics (serve); simulated vLLM (sim).
EXPOSE 9002 9003 9090 8000
ENTRYPOINT ["extproc"]
CMD ["serve"]
