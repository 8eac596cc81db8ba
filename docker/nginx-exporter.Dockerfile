# The nginx Prometheus exporter from Debian's packages (docker-compose.yml runs nginx/nginx-prometheus-exporter).
# Its Go flags take one dash or two, so the Compose service's --nginx.scrape-uri works unchanged.
# debian-packages: prometheus-nginx-exporter
ARG BASE
FROM ${BASE}
COPY debs/ /tmp/debs/
RUN DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /tmp/debs/*.deb \
    && rm -rf /tmp/debs
USER nobody
EXPOSE 9113
ENTRYPOINT ["/usr/bin/prometheus-nginx-exporter"]
