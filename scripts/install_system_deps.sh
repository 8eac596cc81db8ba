#!/usr/bin/env bash
# Install the Debian packages the stack and the tests use, only those missing (a fresh machine, or CI).
set -euo pipefail
# command or file that proves the package is there -> Debian package
declare -A wanted=(
  [/usr/sbin/nginx]=nginx
  [/usr/lib/nginx/modules/ngx_stream_module.so]=libnginx-mod-stream
  [/usr/bin/prometheus]=prometheus
  [/usr/bin/prometheus-node-exporter]=prometheus-node-exporter
  [/usr/bin/prometheus-nginx-exporter]=prometheus-nginx-exporter
  [/usr/bin/prometheus-elasticsearch-exporter]=prometheus-elasticsearch-exporter
  [/usr/bin/tshark]=tshark
  [/usr/sbin/softflowd]=softflowd
  [/usr/sbin/pmacctd]=pmacct
  [/usr/bin/nfcapd]=nfdump
  [/usr/bin/docker-compose]=docker-compose
  # the Docker engine (a docker client alone cannot run the stack) and what builds its images without a registry
  [/usr/sbin/dockerd]=docker.io
  [/usr/sbin/debootstrap]=debootstrap
  [/usr/sbin/snmpd]=snmpd  # the SNMP enrichment tests poll a private one (tests/support/snmpd.py)
)
missing=()
for path in "${!wanted[@]}"; do [[ -e "$path" ]] || missing+=("${wanted[$path]}"); done
if (( ${#missing[@]} )); then
echo "[install_system_deps] installing: ${missing[*]}" >&2
SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Debian's packages start services on install; the stack starts its own, so keep these from holding the ports.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for svc in nginx prometheus prometheus-node-exporter prometheus-nginx-exporter prometheus-elasticsearch-exporter snmpd; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
fi
bash "$(dirname "$0")/start_docker.sh"
