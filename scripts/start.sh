#!/usr/bin/env bash
# Quick start: installs what is missing, starts Redis and FerretDB if needed, builds, and runs
# Rapport with every role in one process. Extra arguments go to `rapport` (e.g. `api`, `worker`,
# `--reset` to start the sandbox clean).
#
# A second start does no needless work: the install runs only when node_modules is older than
# package-lock.json (or missing), the TypeScript build only when a file under src/ (or a tsconfig,
# or the lock file) is newer than the last build. Install logs go to .data/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

# npm records what it installed in node_modules/.package-lock.json: older than the lock file means stale.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  bash scripts/install-deps.sh
fi
# Local settings live in .env (gitignored). The first run writes one with a fresh admin token.
# It starts in sandbox mode (emulated Twilio, Meta and Slack; README "Sandbox"): remove the
# SANDBOX line when you add real provider credentials.
if [ ! -f .env ]; then
  token=$(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')
  printf '# Sandbox mode: emulated providers, nothing leaves this machine. Delete SANDBOX=true to run for real.\nSANDBOX=true\nADMIN_TOKEN=%s\n' "$token" >.env
  echo "[start] wrote .env with SANDBOX=true and a new ADMIN_TOKEN (see .env.example for every setting)"
fi
# DATA_KEY keys the erase markers and hashed ids in logs (README "Privacy"): a sandbox .env without one
# gets one, so erase works there from the first start. A real deployment sets its own.
if grep -q '^SANDBOX=true' .env && ! grep -q '^DATA_KEY=' .env; then
  printf 'DATA_KEY=%s\n' "$(node -e 'console.log(require("crypto").randomBytes(32).toString("hex"))')" >>.env
  echo "[start] added a DATA_KEY to .env (sandbox)"
fi
set -a
# shellcheck disable=SC1091
. ./.env
set +a
bash scripts/dev-services.sh

stamp=dist/.build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find src tsconfig.json tsconfig.build.json package-lock.json -newer "$stamp" -print -quit)" ]; then
  echo "[start] building (TypeScript)…"
  npm run --silent build
  touch "$stamp"
fi

# The sandbox address is printed once the server answers, not before.
case "${SANDBOX:-}" in
  true | 1 | yes)
    port=${PORT:-3000}
    (
      for _ in $(seq 1 600); do
        if node -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' \
          "http://127.0.0.1:${port}/sandbox" 2>/dev/null; then
          echo "[start] SANDBOX ready: open http://localhost:${port}/sandbox (nothing leaves this machine)"
          exit 0
        fi
        sleep 0.5
      done
    ) &
    ;;
esac
# The young generation as the image runs it (Dockerfile): 2 × 8 MB semi-spaces.
exec node --max-semi-space-size=8 dist/main.js "${@:-all}"
