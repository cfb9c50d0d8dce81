#!/usr/bin/env bash
# Debian packages the test suite needs beyond python3/make: a real browser for the UI checks (Debian's chromium,
# never a downloaded one) and a real PostgreSQL server for the scale-out tests. Installs only what is missing.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing Debian packages: ${need[*]}. Run: sudo make system-deps" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "system-deps: chromium=$(command -v chromium) postgres=$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | head -1)"
