#!/bin/bash
# Entry point of the Elasticsearch image built from the integ-test-zip: environment variables named like
# settings (lower case with a dot: discovery.type=single-node, xpack.security.enabled=false) become -E options,
# as the official image's entry point makes them, so docker-compose.yml configures both images the same way.
set -euo pipefail
if [[ "${1:-elasticsearch}" != elasticsearch ]]; then exec "$@"; fi
shift || true
options=()
while IFS='=' read -r -d '' name value; do
  if [[ "$name" =~ ^[a-z0-9_]+\.[a-z0-9_.]+$ ]]; then options+=("-E" "$name=$value"); fi
done < <(env -0)
exec /usr/share/elasticsearch/bin/elasticsearch "${options[@]}" "$@"
