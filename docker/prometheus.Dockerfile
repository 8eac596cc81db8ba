# Prometheus from Debian's packages (docker-compose.yml runs prom/prometheus). Same entry point, user and
# storage folder as that image, so the Compose service's arguments and volume work unchanged.
# debian-packages: prometheus wget
ARG BASE
FROM ${BASE}
COPY debs/ /tmp/debs/
RUN DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /tmp/debs/*.deb \
    && rm -rf /tmp/debs && mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
