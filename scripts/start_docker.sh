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
wait_engine() { for _ in $(seq "$1"); do docker info >/dev/null 2>&1 && return 0; sleep 0.5; done; return 1; }
if [[ $(ps -o comm= -p 1) == systemd ]]; then
  $SUDO systemctl start docker || true
else
  # Debian's init script raises ulimits first, which fails where CAP_SYS_RESOURCE is withheld (sandboxes)
  $SUDO service docker start >/dev/null 2>&1 || true
fi
wait_engine 20 && exit 0
if ! pgrep -x dockerd >/dev/null; then
  # no service manager could start it: run it detached, as the init script would, logging to the same file
  $SUDO setsid dockerd >>/var/log/docker.log 2>&1 < /dev/null &
fi
wait_engine 60 && exit 0
echo "[start_docker] the Docker engine did not start; see /var/log/docker.log (make run falls back to local processes)" >&2
exit 0
