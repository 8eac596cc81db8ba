# Elasticsearch from Maven Central's integ-test-zip (the distribution the tests run) on a JDK of the host's
# (21 or newer), laid out like the official image docker-compose.yml runs: /usr/share/elasticsearch, user
# elasticsearch (uid 1000, group 0), settings from environment variables such as discovery.type.
# debian-packages: curl
ARG BASE
FROM ${BASE}
COPY debs/ /tmp/debs/
RUN DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /tmp/debs/*.deb \
    && rm -rf /tmp/debs \
    && useradd --uid 1000 --gid 0 --home-dir /usr/share/elasticsearch --no-create-home elasticsearch
COPY --chown=1000:0 elasticsearch/ /usr/share/elasticsearch/
# The launcher runs the JDK in jdk/ when ES_JAVA_HOME is unset, as with the bundled JDK of the full distributions.
COPY jdk/ /usr/share/elasticsearch/jdk/
COPY elasticsearch-entrypoint.sh /usr/local/bin/elasticsearch-entrypoint
RUN mkdir -p /usr/share/elasticsearch/data /usr/share/elasticsearch/logs \
    && printf 'cluster.name: docker-cluster\nnetwork.host: 0.0.0.0\n' > /usr/share/elasticsearch/config/elasticsearch.yml \
    && chown -R 1000:0 /usr/share/elasticsearch/data /usr/share/elasticsearch/logs /usr/share/elasticsearch/config
ENV PATH=/usr/share/elasticsearch/bin:$PATH
WORKDIR /usr/share/elasticsearch
USER 1000:0
EXPOSE 9200 9300
ENTRYPOINT ["/usr/local/bin/elasticsearch-entrypoint"]
CMD ["elasticsearch"]
