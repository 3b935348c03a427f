# The gateway image: `docker build -t gateway .` then
# `docker run -p 4000:4000 -e GATEWAY_MASTER_KEY=sk-... -v $PWD/gateway.yaml:/app/gateway.yaml gateway`.
FROM python:3.11-slim AS build
# gcc builds the token counter, a C extension (gateway/usage/_bpe.c); the image has the Python headers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# Offline by design: no remote price map, no model hub downloads at run time.
ENV LITELLM_LOCAL_MODEL_COST_MAP=True \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_CONFIG=/app/gateway.yaml \
    GATEWAY_DATABASE_URL=sqlite:////data/gateway.db \
    GATEWAY_SPOOL_DIR=/data/spool
RUN useradd --create-home --uid 10001 gateway && mkdir -p /data /app && chown gateway /data /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY --chown=gateway gateway.yaml ./gateway.yaml
COPY --chown=gateway policies ./policies
USER gateway
EXPOSE 4000
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:4000/healthz').status != 200)"
CMD ["gateway", "serve", "--host", "0.0.0.0", "--port", "4000"]
