# flowsink ingest node image (docker-compose.yml service "ingest").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/flowsink

# The package build copies the index templates, Kibana objects and monitoring files into the installed package
# (flowsink.assets), so nothing of the source tree is needed at run time. Behind a proxy that inspects HTTPS,
# pip needs its CA: docs/stack.md shows the build secret that passes it.
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY ingest ./ingest
COPY elasticsearch ./elasticsearch
COPY kibana ./kibana
COPY monitoring ./monitoring
COPY nginx ./nginx
RUN pip install --no-compile .

# runtime: from here on shared with the image built from Debian's packages (docker/flowsink.Dockerfile)
RUN useradd --system --home-dir /var/lib/flowsink --shell /usr/sbin/nologin flowsink \
    && mkdir -p /var/lib/flowsink && chown flowsink /var/lib/flowsink
# Any port takes any protocol; nginx in front sends NetFlow to 2055, IPFIX to 4739, sFlow to 6343.
EXPOSE 2055/udp 4739/udp 6343/udp 8080/tcp
VOLUME ["/var/lib/flowsink"]
USER flowsink
ENV FLOWSINK_RECEIVE_HOST=0.0.0.0 \
    FLOWSINK_RECEIVE_PORTS=2055,4739,6343 \
    FLOWSINK_HTTP_HOST=0.0.0.0 \
    FLOWSINK_HTTP_PORT=8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
# Claims a queue slot on the shared volume (one per replica), then execs the command.
ENTRYPOINT ["python", "-m", "flowsink.stack.entrypoint"]
CMD ["flowsink", "run"]
