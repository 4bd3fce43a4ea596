# The gateway as a container: non-root, configuration and state mounted from outside.
#   docker build -t gateway .
#   docker run -p 8080:8080 -v $PWD/deploy:/etc/gateway gateway
# /etc/gateway holds gateway.toml (with [server] host = "0.0.0.0"), its policies/ and secret key;
# keep store.path on a volume so users and sessions survive restarts.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 GATEWAY_CONFIG=/etc/gateway/gateway.toml
RUN useradd --system --uid 10001 --home-dir /var/lib/gateway --create-home gateway
WORKDIR /opt/gateway
# The dependencies exactly as locked, each checked against its hash (a layer of its own, rebuilt only
# when the lock changes); then the gateway itself, without dependencies, built with the locked setuptools.
COPY requirements/runtime.lock ./requirements/
RUN pip install --no-cache-dir --require-hashes -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir --no-deps --no-build-isolation --check-build-dependencies . && rm -rf /root/.cache
# The gateway user, by number (runAsNonRoot-style checks cannot resolve a name).
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/.gateway/healthz').status != 200)"]
ENTRYPOINT ["gateway"]
CMD ["serve"]
