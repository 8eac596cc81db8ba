#!/usr/bin/env bash
# Start the Docker engine when it is installed but not running (make run / make test call this through
# install_system_deps.sh). systemd hosts: systemctl; others (containers, sandboxes): Debian's init script.
set -euo pipefail
command -v dockerd >/dev/null || exit 0
docker info >/dev/null 2>&1 && exit 0
SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
# node-exporter mounts / with rslave propagation, which needs / to be a shared mount; systemd makes it one at
# boot, a host without systemd as process 1 may not have.
if [[ $(findmnt -no PROPAGATION / 2>/dev/null) == private ]]; then $SUDO mount --make-rshared /; fi
echo "[start_docker] starting the Docker engine" >&2
if [[ $(ps -o comm= -p 1) == systemd ]]; then
  $SUDO systemctl start docker
else
  $SUDO service docker start >/dev/null
fi
for _ in $(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done
echo "[start_docker] the Docker engine did not start; see /var/log/docker.log (make run falls back to local processes)" >&2
exit 0
