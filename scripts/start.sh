#!/usr/bin/env bash
# Quick start: installs what is missing, starts Redis and FerretDB if needed, builds, and runs
# Rapport with every role in one process. Extra arguments go to `rapport` (e.g. `api`, `worker`).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -d node_modules ] || bash scripts/install-deps.sh
# Local settings live in .env (gitignored). The first run writes one with a fresh admin token.
# It starts in sandbox mode (emulated Twilio, Meta and Slack; README "Sandbox"): remove the
# SANDBOX line when you add real provider credentials.
if [ ! -f .env ]; then
  token=$(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')
  printf '# Sandbox mode: emulated providers, nothing leaves this machine. Delete SANDBOX=true to run for real.\nSANDBOX=true\nADMIN_TOKEN=%s\n' "$token" >.env
  echo "[start] wrote .env with SANDBOX=true and a new ADMIN_TOKEN (see .env.example for every setting)"
fi
set -a
# shellcheck disable=SC1091
. ./.env
set +a
case "${SANDBOX:-}" in
  true | 1 | yes) echo "[start] SANDBOX mode: open http://localhost:${PORT:-3000}/sandbox (nothing leaves this machine)" ;;
esac
bash scripts/dev-services.sh
npm run --silent build
exec node dist/main.js "${@:-all}"
