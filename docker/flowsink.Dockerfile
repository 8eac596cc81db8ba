# The flowsink ingest image on the Debian base: Debian's Python 3.11, the project's wheel and its dependencies'
# wheels, built on the host (flowsink/stack/images.py), so nothing is downloaded inside the build.
# Everything after this header is the runtime part of the repository's Dockerfile, appended unchanged when the
# image is built, so both images run the node the same way.
# debian-packages: python3 python3-venv
ARG BASE
FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PATH=/opt/venv/bin:$PATH
WORKDIR /opt/flowsink
COPY debs/ /tmp/debs/
RUN DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /tmp/debs/*.deb \
    && rm -rf /tmp/debs && python3 -m venv /opt/venv
COPY wheels/dependencies/ /tmp/wheels/
RUN pip install --no-index --no-compile /tmp/wheels/*.whl && rm -rf /tmp/wheels
COPY wheels/flowsink/ /tmp/wheels/
RUN pip install --no-index --no-deps --no-compile /tmp/wheels/*.whl && rm -rf /tmp/wheels
