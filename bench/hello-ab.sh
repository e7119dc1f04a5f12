#!/bin/bash
# Hello, two built checkouts side by side (BENCHMARKS.md): both servers up at once, a 3 s warm-up
# of each, then ROUNDS rounds of 8 s at 32 connections, the order rotated each round.
#   bench/hello-ab.sh <checkout A> <checkout B> [rounds]   (each built: npm run build)
set -u
A=$1
B=$2
ROUNDS=${3:-5}
HERE=$(cd "$(dirname "$0")/.." && pwd)
AC=$HERE/node_modules/.bin/autocannon
F=$(mktemp -d)
cp "$HERE/functions/hello.js" "$F/"
start() {
  (cd "$1" && PORT=$2 HOST=127.0.0.1 WORKERS=2 LOG_LEVEL=warn FUNCTIONS_DIR=$F DATA_DIR=$(mktemp -d) \
    ADMIN_TOKEN=bench-admin-token-0123456789 exec node dist/src/main.js) > /dev/null 2>&1 &
}
start "$A" 3931
PA=$!
start "$B" 3932
PB=$!
trap 'kill $PA $PB 2> /dev/null' EXIT
sleep 5
for port in 3931 3932; do "$AC" -c 32 -d 3 "localhost:$port/hello" > /dev/null 2>&1; done
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order="3931 3932"; else order="3932 3931"; fi
  for port in $order; do
    figures=$("$AC" -c 32 -d 8 -j "localhost:$port/hello" 2> /dev/null | node -e '
      let s = "";
      process.stdin.on("data", (d) => (s += d)).on("end", () => {
        const j = JSON.parse(s);
        console.log(Math.round(j.requests.average), "req/s p99", j.latency.p99, "ms non-2xx", j.non2xx);
      });')
    [ "$port" = 3931 ] && name=A || name=B
    echo "round $round $name $figures"
  done
done
