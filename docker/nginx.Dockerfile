# nginx with the stream module, from Debian's packages (docker-compose.yml runs the official nginx image).
# Debian loads the stream module dynamically: nginx/nginx.docker.conf includes /etc/nginx/modules-enabled/*.conf,
# which matches nothing in the official image (stream built in) and loads it here.
# debian-packages: nginx libnginx-mod-stream curl
ARG BASE
FROM ${BASE}
COPY debs/ /tmp/debs/
RUN DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /tmp/debs/*.deb \
    && rm -rf /tmp/debs /var/log/nginx/*.log \
    && ln -s /dev/stdout /var/log/nginx/access.log && ln -s /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
