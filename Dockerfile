# syntax=docker/dockerfile:1
# Otedama node image (docs/deploy.md). Two stages: wheels are built with the full Python
# image, the runtime image gets only the installed wheels and runs as a non-root user.
#   docker build -t otedama .
#   docker run --rm otedama --help          (arguments go to `twistd … otedama`)

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY otedama ./otedama
COPY twisted ./twisted
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim AS runtime
ARG UID=10001
RUN groupadd --system --gid ${UID} otedama \
 && useradd --system --uid ${UID} --gid otedama --home-dir /var/lib/otedama \
            --no-create-home --shell /usr/sbin/nologin otedama
COPY --from=build /wheels /wheels
# A plain (non-editable) install: twistd finds the plugin in twisted/plugins. The plugin
# cache is written now, as root, because site-packages is read-only for the node.
RUN pip install --no-cache-dir --no-index --find-links /wheels otedama \
 && rm -rf /wheels \
 && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
COPY deploy/otedama.yaml /etc/otedama.yaml
RUN mkdir -p /var/lib/otedama && chown otedama:otedama /var/lib/otedama
ENV OTEDAMA_CONFIG=/etc/otedama.yaml \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER otedama
WORKDIR /var/lib/otedama
VOLUME ["/var/lib/otedama"]
# Stratum, REST API, federation gossip (TCP) and DHT (UDP), Prometheus, health.
EXPOSE 3333 8080 4444 4444/udp 9090 8081
# 200 for ok and degraded (miners keep working), 503 when down. The start period covers
# waiting for bitcoind and the database.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/health', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["twistd", "--nodaemon", "--pidfile=", "otedama"]
CMD ["--config", "/etc/otedama.yaml"]
