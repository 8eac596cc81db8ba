# The Elasticsearch Prometheus exporter from Debian's packages (docker-compose.yml runs
# quay.io/prometheuscommunity/elasticsearch-exporter).
# debian-packages: prometheus-elasticsearch-exporter wget
ARG BASE
FROM ${BASE}
COPY debs/ /tmp/debs/
RUN DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /tmp/debs/*.deb \
    && rm -rf /tmp/debs
USER nobody
EXPOSE 9114
ENTRYPOINT ["/usr/bin/prometheus-elasticsearch-exporter"]
