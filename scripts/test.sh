#!/usr/bin/env bash
# The test command: installs what is missing, starts Redis and FerretDB if needed, type-checks, and
# runs the whole jest suite against them. Ends with one line `N passed, N failed`; exits non-zero on
# any failure. Extra arguments go to jest (e.g. a test file path).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -d node_modules ] || bash scripts/install-deps.sh
bash scripts/dev-services.sh
npx tsc -p tsconfig.json --noEmit
mkdir -p test-artifacts
status=0
npx jest --json --outputFile=test-artifacts/jest.json "$@" || status=$?
node -e '
  const r = require("./test-artifacts/jest.json");
  const failedSuites = r.numFailedTestSuites + (r.numRuntimeErrorTestSuites || 0);
  if (failedSuites && !r.numFailedTests) console.log(`${failedSuites} test file(s) failed to run`);
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests + (failedSuites && !r.numFailedTests ? failedSuites : 0)} failed`);
'
exit "$status"
