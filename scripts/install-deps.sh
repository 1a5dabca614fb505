#!/usr/bin/env bash
# Installs node modules exactly as locked, and (for the browser tests) Debian's chromium when it is
# missing and apt-get can install it. `npm ci` refuses this lock file when the registry in use lacks
# some other platforms' optional binaries (e.g. @swc/core-darwin-arm64 at the locked version), which
# it then cannot record; `npm install --no-save` installs the same locked versions for this platform
# without rewriting the lock file. No browser is downloaded by npm (.puppeteerrc.cjs).
#
# The first install takes a while: a progress line every 5 s says how far it got. npm's output goes
# to .data/logs/install.log (under the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
export PUPPETEER_SKIP_DOWNLOAD=true
mkdir -p .data/logs
log=.data/logs/install.log

# Runs npm with its output in $log, printing progress (packages installed so far) meanwhile.
with_progress() {
  local started=$SECONDS
  "$@" >"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    if kill -0 "$pid" 2>/dev/null; then
      local count
      count=$(find node_modules -mindepth 1 -maxdepth 2 -name package.json 2>/dev/null | wc -l)
      echo "[install] $((SECONDS - started)) s: ${count} packages so far (log: $log)"
    fi
  done
  wait "$pid"
}

echo "[install] installing node modules as locked (first run: about a minute; log: $log)"
if ! with_progress npm ci --no-audit --no-fund; then
  if grep -q 'Missing: .* from lock file' "$log"; then
    echo "[install] npm ci: lock file lists platform binaries this registry does not serve; using npm install --no-save"
    with_progress npm install --no-audit --no-fund --no-save
  else
    cat "$log" >&2
    exit 1
  fi
fi
echo "[install] done"

# The browser tests drive Debian's chromium (test/browser); CI installs it here.
if [ ! -x /usr/bin/chromium ] && [ "${RAPPORT_SKIP_CHROMIUM:-}" != "1" ] && command -v apt-get >/dev/null; then
  if [ "$(id -u)" = "0" ]; then
    echo "[install] installing Debian's chromium for the browser tests (log: .data/logs/apt.log)"
    { apt-get update && apt-get install -y chromium; } >.data/logs/apt.log 2>&1 ||
      echo "[install] could not install chromium (see .data/logs/apt.log): the browser tests will be skipped or fail"
  else
    echo "[install] /usr/bin/chromium is missing: the browser tests need it (sudo apt-get install -y chromium)"
  fi
fi
