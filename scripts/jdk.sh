# Sourced by the scripts that run a JVM service: pick the JDK it runs on.
# newest_jdk MIN_MAJOR: prints the newest JDK under /usr/lib/jvm whose major version is at least MIN_MAJOR;
# returns 1 (printing nothing) when there is none.
newest_jdk() {
  local min=$1 best="" best_major=0 d major
  for d in /usr/lib/jvm/*/; do
    [[ -x "$d/bin/java" ]] || continue
    major=$("$d/bin/java" -XshowSettings:properties -version 2>&1 | awk -F= '/java.specification.version/ {gsub(/ /,"",$2); print $2}')
    major=${major%%.*}
    if [[ "$major" =~ ^[0-9]+$ ]] && (( major > best_major )); then best_major=$major; best=${d%/}; fi
  done
  (( best_major >= min )) || return 1
  echo "$best"
}
