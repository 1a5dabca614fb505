#!/usr/bin/env bash
# The test command: installs what is missing, starts Redis and FerretDB if needed, type-checks, lints
# (`npm run lint`: eslint and the function-length check), and runs the whole jest suite against them;
# then runs the end-to-end tests again with REDIS_URL on a local 3-master Redis Cluster
# (scripts/redis-cluster.sh). Ends with one line `N passed, N failed` (both runs together); exits
# non-zero on any failure, a lint failure included (jest still runs after one).
# Extra arguments go to jest (e.g. a test file path) and skip the lint and the cluster pass;
# RAPPORT_TEST_LINT=0 and RAPPORT_TEST_CLUSTER=0 skip them too.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -d node_modules ] || bash scripts/install-deps.sh
bash scripts/dev-services.sh
npx tsc -p tsconfig.json --noEmit
status=0
lint_status=0
if [ $# -eq 0 ] && [ "${RAPPORT_TEST_LINT:-1}" != 0 ]; then
  npx eslint . || lint_status=$?
  npm run --silent check:function-length || lint_status=$?
  npx madge --circular --extensions ts src || lint_status=$?
  [ "$lint_status" -eq 0 ] || echo "[test] lint, function-length or import-cycle check failed (above)"
  [ "$lint_status" -eq 0 ] || status=$lint_status
fi
mkdir -p test-artifacts
rm -f test-artifacts/jest.json test-artifacts/jest-cluster.json
npx jest --json --outputFile=test-artifacts/jest.json "$@" || status=$?

# The end-to-end tests (webhook → queues → identity → Slack → provider) on a Redis Cluster.
CLUSTER_TESTS=(
  test/integration/pipeline.test.ts
  test/integration/router.test.ts
  test/integration/outbound.test.ts
  test/integration/ordering.test.ts
  test/integration/identity-merge.test.ts
  test/integration/identity-claims.test.ts
  test/integration/whatsapp-web-routing.test.ts
)
if [ $# -eq 0 ] && [ "${RAPPORT_TEST_CLUSTER:-1}" != 0 ]; then
  cluster_url=$(bash scripts/redis-cluster.sh start)
  echo "[test] end-to-end tests again with REDIS_URL on the Redis Cluster ($cluster_url)"
  TEST_REDIS_URL="$cluster_url" npx jest --json --outputFile=test-artifacts/jest-cluster.json \
    "${CLUSTER_TESTS[@]}" || status=$?
fi

node -e '
  const fs = require("fs");
  let passed = 0, failed = 0;
  for (const file of ["test-artifacts/jest.json", "test-artifacts/jest-cluster.json"]) {
    if (!fs.existsSync(file)) continue;
    const r = JSON.parse(fs.readFileSync(file, "utf8"));
    const failedSuites = r.numFailedTestSuites + (r.numRuntimeErrorTestSuites || 0);
    if (failedSuites && !r.numFailedTests) console.log(`${file}: ${failedSuites} test file(s) failed to run`);
    passed += r.numPassedTests;
    failed += r.numFailedTests + (failedSuites && !r.numFailedTests ? failedSuites : 0);
  }
  console.log(`${passed} passed, ${failed} failed`);
'
[ "$lint_status" -eq 0 ] || echo "lint failed (npm run lint): see the eslint and function-length output above"
exit "$status"
