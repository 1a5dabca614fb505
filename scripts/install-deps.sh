#!/usr/bin/env bash
# Installs node modules exactly as locked. `npm ci` refuses this lock file when the registry in use
# lacks some other platforms' optional binaries (e.g. @swc/core-darwin-arm64 at the locked version),
# which it then cannot record; `npm install --no-save` installs the same locked versions for this
# platform without rewriting the lock file. No browser is downloaded (.puppeteerrc.cjs).
set -euo pipefail
cd "$(dirname "$0")/.."
export PUPPETEER_SKIP_DOWNLOAD=true
if ! npm ci --no-audit --no-fund 2>/tmp/rapport-npm-ci.log; then
  if grep -q 'Missing: .* from lock file' /tmp/rapport-npm-ci.log; then
    echo "[install] npm ci: lock file lists platform binaries this registry does not serve; using npm install --no-save"
    npm install --no-audit --no-fund --no-save
  else
    cat /tmp/rapport-npm-ci.log >&2
    exit 1
  fi
fi
