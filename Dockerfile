# syntax=docker/dockerfile:1
# Creditgate HTTP service. Build: docker build -t creditgate .
# Run:   docker run -p 8000:8000 -v creditgate-data:/data creditgate
#        docker run --rm -v creditgate-data:/data creditgate creditgate keys create --role order_entry
# The same install is exercised without Docker by tests/product/test_install.py (pytest -m slow).

# --- build stage: wheels for the app and every dependency ------------------------------------
# durable_rules is published as a source distribution only, so it is compiled here (gcc and
# the C library headers; the python image already carries Python's own headers).
FROM python:3.12-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ libc6-dev make \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY rules ./rules
COPY engine ./engine
COPY analysis ./analysis
COPY api ./api
RUN pip wheel --wheel-dir /wheels .

# --- runtime stage: no compiler, non-root ----------------------------------------------------
FROM python:3.12-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CREDITGATE_POLICY_PATH=/app/policies.yaml \
    DATABASE_URL=sqlite:////data/creditgate.db
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels creditgate \
 && rm -rf /wheels \
 && groupadd --system --gid 10001 creditgate \
 && useradd --system --uid 10001 --gid creditgate --home-dir /app --shell /usr/sbin/nologin creditgate \
 && mkdir -p /app /data \
 && chown creditgate:creditgate /data
WORKDIR /app
COPY --chown=root:root policies.yaml policies.tests.yaml ./
VOLUME ["/data"]
USER creditgate
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
CMD ["creditgate", "serve", "--host", "0.0.0.0", "--port", "8000"]
