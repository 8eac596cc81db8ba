# Prometheus node_exporter from Debian's packages (docker-compose.yml runs quay.io/prometheus/node-exporter).
# debian-packages: prometheus-node-exporter wget
ARG BASE
FROM ${BASE}
COPY debs/ /tmp/debs/
RUN DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /tmp/debs/*.deb \
    && rm -rf /tmp/debs
USER nobody
EXPOSE 9100
ENTRYPOINT ["/usr/bin/prometheus-node-exporter"]
