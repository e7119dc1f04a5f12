#!/usr/bin/env bash
# Builds the koa-faas image and tests a real container of it with podman:
#   - the image's own functions answer (GET /hello), /_/health is up, the HEALTHCHECK is defined
#     and passes;
#   - a functions folder mounted read-only at /app/functions (as docs/operations.md shows) is served;
#   - the server and its workers run as the non-root `node` user; the code is read-only to it and
#     only /app/functions is writable (the admin deploy API, tested with ADMIN_TOKEN, writes there);
#   - `podman stop` (SIGTERM) drains: the container exits 0, well before the stop timeout.
# Usage: npm run test:container   (or bash scripts/test-container.sh)
# Env: IMAGE (default koa-faas), OCI_RUNTIME (default runc), STOP_TIMEOUT (default 20 s).
# Needs podman and the base image docker.io/library/node:20-bookworm-slim; on a machine without
# a registry, ../shared/container/stand-in-node-image.sh provides both (it needs root).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STAND_IN="$(dirname "$0")/../../shared/container/stand-in-node-image.sh"
BASE_IMAGE=docker.io/library/node:20-bookworm-slim
IMAGE=${IMAGE:-koa-faas}
OCI_RUNTIME=${OCI_RUNTIME:-runc}
STOP_TIMEOUT=${STOP_TIMEOUT:-20}
# A drained stop takes well under a second; anything near STOP_TIMEOUT means it was killed.
STOP_LIMIT_S=10
HELLO_EXPECTED='{"message":"it works!","status":"ok"}'

log() { printf '[test-container] %s\n' "$*" >&2; }

passes=()
failures=()
pass() { passes+=("$1"); log "PASS  $1"; }
fail() { failures+=("$1"); log "FAIL  $1"; }

containers=()
work=$(mktemp -d)
summary() {
  local code=$?
  for id in "${containers[@]}"; do podman rm -f -t 0 "$id" >/dev/null 2>&1 || true; done
  rm -rf "$work"
  echo
  echo "==================== container test summary ===================="
  [ -n "${build_seconds:-}" ] && echo "image: $IMAGE  size: ${image_size:-?}  build: ${build_seconds}s"
  for p in "${passes[@]}"; do echo "  PASS  $p"; done
  for f in "${failures[@]}"; do echo "  FAIL  $f"; done
  if [ "$code" -eq 0 ] && [ "${#failures[@]}" -eq 0 ] && [ "${finished:-0}" -eq 1 ]; then
    echo "RESULT: PASS (${#passes[@]} checks)"
    echo "================================================================"
    exit 0
  fi
  [ "${finished:-0}" -eq 1 ] || echo "  (aborted before all checks ran)"
  echo "RESULT: FAIL (${#failures[@]} failed, ${#passes[@]} passed)"
  echo "================================================================"
  exit 1
}
trap summary EXIT
die() { fail "$1"; exit 1; }

pm() { podman --runtime "$OCI_RUNTIME" "$@"; }

# --- prerequisites: podman and the base image ---
if ! command -v podman >/dev/null 2>&1 || ! podman image exists "$BASE_IMAGE" 2>/dev/null; then
  log "podman or $BASE_IMAGE missing: running $STAND_IN"
  [ -f "$STAND_IN" ] || die "base image $BASE_IMAGE missing and $STAND_IN not found"
  bash "$STAND_IN" || die "stand-in base image script failed"
fi
command -v curl >/dev/null 2>&1 || die "curl is needed on the host"

# --- build ---
log "building $IMAGE from $ROOT"
start_ns=$(date +%s%N)
# --format docker: the OCI image format has no HEALTHCHECK, and podman would drop it.
if ! pm build --pull=never --format docker -t "$IMAGE" "$ROOT" >"$work/build.log" 2>&1; then
  tail -40 "$work/build.log" >&2
  die "image builds"
fi
build_seconds=$(( ($(date +%s%N) - start_ns) / 1000000 ))
build_seconds=$(printf '%d.%03d' $((build_seconds / 1000)) $((build_seconds % 1000)))
image_size=$(podman image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.1f MB", $1 / 1e6}')
pass "image builds (${build_seconds}s, $image_size)"

healthcheck=$(podman image inspect "$IMAGE" --format '{{json .Config.Healthcheck}}' 2>/dev/null || true)
if [[ "$healthcheck" == *'/_/health'* ]]; then
  pass "image defines a HEALTHCHECK on /_/health"
else
  fail "image defines a HEALTHCHECK on /_/health (got: $healthcheck)"
fi
cmd=$(podman image inspect "$IMAGE" --format '{{json .Config.Cmd}}')
if [ "$cmd" = '["node","dist/src/main.js"]' ]; then
  pass "CMD is exec-form node dist/src/main.js"
else
  fail "CMD is exec-form node dist/src/main.js (got: $cmd)"
fi

# --- helpers ---
free_port() {
  node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# start NAME [podman run options...] → sets $cid and $port
start() {
  local name=$1
  shift
  port=$(free_port)
  # podman's stderr complains about systemd health-check timers on hosts without systemd: keep
  # it out of the way unless the run fails.
  if ! cid=$(pm run -d -p "127.0.0.1:$port:3000" "$@" "$IMAGE" 2>"$work/run-$name.err"); then
    cat "$work/run-$name.err" >&2
    die "$name container starts"
  fi
  containers+=("$cid")
  log "$name container ${cid:0:12} on 127.0.0.1:$port"
}

# wait_healthy NAME: polls /_/health for up to 30 s
wait_healthy() {
  local name=$1 i
  for i in $(seq 1 60); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/_/health")" = 200 ]; then
      pass "$name: /_/health answers 200"
      return 0
    fi
    if [ "$(podman inspect --format '{{.State.Running}}' "$cid")" != true ]; then
      podman logs "$cid" >&2 || true
      die "$name: container exited before it was healthy"
    fi
    sleep 0.5
  done
  podman logs "$cid" >&2 || true
  die "$name: /_/health answers 200 within 30 s"
}

# stop_drained NAME: SIGTERM with STOP_TIMEOUT, expects exit 0 well before the timeout
stop_drained() {
  local name=$1 t0 ms code
  t0=$(date +%s%N)
  podman stop -t "$STOP_TIMEOUT" "$cid" >/dev/null 2>&1 || true
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  code=$(podman inspect --format '{{.State.ExitCode}}' "$cid")
  if [ "$code" = 0 ]; then
    pass "$name: SIGTERM → exit code 0"
  else
    podman logs --tail 20 "$cid" >&2 || true
    fail "$name: SIGTERM → exit code 0 (got $code)"
  fi
  if [ "$ms" -lt $((STOP_LIMIT_S * 1000)) ]; then
    pass "$name: stopped in ${ms} ms (drained, not killed after ${STOP_TIMEOUT}s)"
  else
    fail "$name: stopped in under ${STOP_LIMIT_S}s (took ${ms} ms)"
  fi
  if podman logs "$cid" 2>/dev/null | grep -q '"msg":"stopped"'; then
    pass "$name: logged a JSON \"stopped\" line"
  else
    fail "$name: logged a JSON \"stopped\" line"
  fi
}

# --- 1. the image as built: its own functions/ ---
ADMIN_TOKEN=container-test-$RANDOM$RANDOM-token
start builtin -e "ADMIN_TOKEN=$ADMIN_TOKEN"
wait_healthy builtin

body=$(curl -s "http://127.0.0.1:$port/hello")
if [ "$body" = "$HELLO_EXPECTED" ]; then
  pass "builtin: GET /hello → $HELLO_EXPECTED"
else
  fail "builtin: GET /hello → $HELLO_EXPECTED (got: $body)"
fi

uid=$(podman exec "$cid" id -u)
if [ -n "$uid" ] && [ "$uid" != 0 ]; then
  pass "builtin: podman exec id -u → $uid (not root)"
else
  fail "builtin: podman exec id -u is not 0 (got: $uid)"
fi

# Every process in the container — node (PID 1) and the pool's workers — runs as `node`.
procs=$(podman top "$cid" pid user args | tail -n +2)
pid1_user=$(awk '$1 == 1 { print $2 }' <<<"$procs")
pid1_args=$(awk '$1 == 1 { $1 = ""; $2 = ""; sub(/^ +/, ""); print }' <<<"$procs")
if [ "$pid1_user" = node ] && [[ "$pid1_args" == "node dist/src/main.js"* ]]; then
  pass "builtin: PID 1 is \"node dist/src/main.js\" running as node"
else
  fail "builtin: PID 1 is \"node dist/src/main.js\" running as node (got: $pid1_user $pid1_args)"
fi
workers=$(grep -c 'worker/runner.js' <<<"$procs" || true)
root_procs=$(awk '$2 != "node" { $1 = $1; printf "%s; ", $0 }' <<<"$procs")
if [ "$workers" -ge 2 ] && [ -z "$root_procs" ]; then
  pass "builtin: $workers pool workers, every process runs as node"
else
  fail "builtin: pool workers run as node (workers: $workers, others: $root_procs)"
fi

# The code is read-only to `node`; only functions/ (the deploy API) and data/ (the embedded store)
# are writable. The answer must come from inside the container: a failing `podman exec` proves
# nothing.
writable=$(podman exec "$cid" sh -c \
  'for f in /app/x /app/dist/x /app/dist/src/x /app/node_modules/x /app/package.json /app/functions/.w /app/data/.w; do
     touch "$f" 2>/dev/null && echo "$f"; done; rm -f /app/functions/.w /app/data/.w; echo checked' \
  2>"$work/exec.err" | tr '\n' ' ' || true)
if [ "$writable" = '/app/functions/.w /app/data/.w checked ' ]; then
  pass "builtin: node can write /app/functions and /app/data only (not /app, dist, node_modules, package.json)"
else
  fail "builtin: node can write /app/functions and /app/data only (writable: ${writable:-exec failed: $(cat "$work/exec.err")})"
fi

if hc_out=$(podman healthcheck run "$cid" 2>&1); then
  pass "builtin: HEALTHCHECK command passes inside the container"
else
  fail "builtin: HEALTHCHECK command passes inside the container ($hc_out)"
fi

# Every stdout line is a JSON object, and one of them says the server is listening.
if log_check=$(podman logs "$cid" 2>/dev/null | node -e '
  let s = "";
  process.stdin.on("data", (d) => (s += d)).on("end", () => {
    const lines = s.split("\n").filter(Boolean);
    for (const line of lines) {
      try { JSON.parse(line); } catch { console.log("not JSON: " + line); process.exit(1); }
    }
    if (!lines.some((l) => JSON.parse(l).msg === "listening")) { console.log("no listening line"); process.exit(1); }
    console.log(lines.length + " lines");
  });' 2>&1); then
  pass "builtin: logs are JSON lines with a \"listening\" line ($log_check)"
else
  fail "builtin: logs are JSON lines with a \"listening\" line ($log_check)"
fi

# The admin deploy API writes into /app/functions: it works as the node user.
deploy_status=$(curl -s -o "$work/deploy.out" -w '%{http_code}' -X PUT \
  -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/javascript' \
  --data-binary "() => ({ deployed: true })" "http://127.0.0.1:$port/_/functions/deployed")
body=$(curl -s "http://127.0.0.1:$port/deployed")
if [ "$deploy_status" = 201 ] && [ "$body" = '{"deployed":true}' ]; then
  pass "builtin: PUT /_/functions/deployed → 201, GET /deployed → $body"
else
  fail "builtin: deploy through the admin API (PUT → $deploy_status $(cat "$work/deploy.out"); GET → $body)"
fi

stop_drained builtin

# --- 2. a functions folder mounted read-only, as docs/operations.md shows ---
mkdir -p "$work/functions"
cat >"$work/functions/greet.js" <<'EOF'
// Mounted into the container by scripts/test-container.sh.
(event) => ({ greeting: `hello, ${event.query.name || 'world'}`, mounted: true });
EOF
# The container's `node` user (uid 1000) must be able to read the mounted folder.
chmod 755 "$work" "$work/functions"
chmod 644 "$work/functions/greet.js"

start mounted -v "$work/functions:/app/functions:ro"
wait_healthy mounted

body=$(curl -s "http://127.0.0.1:$port/greet?name=container")
if [ "$body" = '{"greeting":"hello, container","mounted":true}' ]; then
  pass "mounted: GET /greet?name=container → $body"
else
  fail "mounted: GET /greet answers from the mounted folder (got: $body)"
fi
status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/hello")
if [ "$status" = 404 ]; then
  pass "mounted: the mount replaces the image's functions (GET /hello → 404)"
else
  fail "mounted: the mount replaces the image's functions (GET /hello → $status, want 404)"
fi

stop_drained mounted

finished=1
