#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need, builds, lints,
# type-checks and runs every test (unit, integration on real servers, end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
# ClickHouse 18.16 from Debian: 16 MB to download with its libraries, about 93 MB installed, 5-20 s.
[ -x /usr/sbin/clickhouse-server ] || missing+=(clickhouse-server)
command -v clickhouse-client >/dev/null 2>&1 || missing+=(clickhouse-client)
# The completion scripts are checked by the shells that load them (bash is here already).
command -v zsh >/dev/null 2>&1 || missing+=(zsh)
command -v fish >/dev/null 2>&1 || missing+=(fish)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${missing[*]} from Debian's packages" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "test.sh: the tests need: ${missing[*]}" >&2
    echo "  install them first, e.g.: sudo apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
fi

[ -d node_modules/.bin ] || npm ci --no-audit --no-fund
npm run --silent build
echo "== lint (biome)" >&2
node_modules/.bin/biome check .
echo "== type-check (tsc)" >&2
node_modules/.bin/tsc -p tsconfig.check.json
echo "== tests (vitest)" >&2
results="$(mktemp -d)/vitest.json"
status=0
node_modules/.bin/vitest run --reporter=default --reporter=json --outputFile.json="$results" "$@" || status=$?
# A plain closing line that any CI can read.
node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const skipped = r.numPendingTests + r.numTodoTests;
console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
' "$results" || true
exit $status
