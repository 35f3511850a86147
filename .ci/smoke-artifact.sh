#!/usr/bin/env bash
# Builds the production artifact the way the Dockerfile does (compiled dist/ and public/, runtime
# dependencies only, in a copy of its own), starts `node dist/src/main.js` against a scratch
# database on the Postgres server at $1, asks it for one transaction's merchant, and loads the
# dashboard's page and script.
set -euo pipefail
cd "$(dirname "$0")/.."
server_url=${1:?usage: smoke-artifact.sh POSTGRES_SERVER_URL}

npm run build
work=$(mktemp -d)
db="mn_smoke_$$"
pid=""
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  psql "$server_url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cp -r package.json package-lock.json dist public "$work/"
(cd "$work" && npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund)
psql "$server_url" -qc "CREATE DATABASE \"$db\""
database_url="${server_url%/*}/$db"

key=$(cd "$work" && DATABASE_URL=$database_url node dist/src/cli/main.js keys create --client smoke)
port=$(node -e "const s=require('net').createServer().listen(0,()=>{console.log(s.address().port);s.close()})")
(cd "$work" && exec env NODE_ENV=production DATABASE_URL="$database_url" PORT="$port" \
  HEURISTIC_DELAY_MS=0 node dist/src/main.js) >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 60); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.5
done
answer=$(curl -fsS -X POST "http://127.0.0.1:$port/normalize_merchant" \
  -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -H 'Prefer: wait=30' \
  -d '{"date": "2026-04-03", "description": "Payment Netflix APRIL***", "amount": 15.49}')
echo "answer: $answer"
merchant=$(node -e 'const j=JSON.parse(process.argv[1]); console.log(j.status, j.result && j.result.merchant && j.result.merchant.name)' "$answer")
if [ "$merchant" != "succeeded Netflix" ]; then
  echo "expected a succeeded job with merchant Netflix, got: $merchant"
  cat "$work/server.log"
  exit 1
fi
# The dashboard's files ship with the build.
page=$(curl -fsS "http://127.0.0.1:$port/")
grep -q '<script type="module" src="/dashboard/app.js">' <<<"$page"
curl -fsS -o /dev/null "http://127.0.0.1:$port/dashboard/app.js"
kill -TERM "$pid"
wait "$pid" || { echo "the server did not stop cleanly on SIGTERM"; cat "$work/server.log"; exit 1; }
pid=""
echo "== the built artifact answered: Netflix"
