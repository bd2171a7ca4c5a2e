#!/usr/bin/env bash
# Passthrough throughput on loopback, in one run: the demo shop alone, Palisade over plain HTTP
# (redirect off, every response hardened), and Palisade over TLS (keep-alive), same wrk settings.
#
#   benches/passthrough.sh [DURATION] [CONNECTIONS]      (defaults: 10s, 32; needs wrk)
#
# Prints requests/s and latency percentiles for each target and the ratios. The full harness
# against nginx and nginx + ModSecurity is issue 6; this is the quick figure for the core.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}
CONN=${2:-32}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet --bin palisade
BIN=target/release/palisade
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

# The demo: shop + gateway (TLS on an ephemeral port).
"$BIN" demo --dir "$WORK/demo" --http 127.0.0.1:0 --https 127.0.0.1:0 --admin 127.0.0.1:0 > "$WORK/demo.out" &
until grep -q '^ready ' "$WORK/demo.out"; do sleep 0.1; done
SHOP=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/demo.out" | head -1)
HTTPS=$(grep '^ready ' "$WORK/demo.out" | sed 's/.*https=\([^ ]*\).*/\1/')

# A plain-HTTP passthrough gateway in front of the same shop (no redirect, still hardened).
cat > "$WORK/plain.toml" <<CONF
[server]
http = "127.0.0.1:0"
https = "off"
admin = "off"
threads = 2
[[sites]]
name = "shop"
hosts = ["localhost", "127.0.0.1"]
upstreams = ["$SHOP"]
https_redirect = false
[logging]
output = "$WORK/plain.log"
level = "${PLAIN_LEVEL:-info}"
CONF
"$BIN" run --config "$WORK/plain.toml" > "$WORK/plain.out" &
until grep -q '^ready ' "$WORK/plain.out"; do sleep 0.1; done
PLAIN=$(grep '^ready ' "$WORK/plain.out" | sed 's/.*http=\([^ ]*\).*/\1/')

run() { # name url
  local out
  out=$(wrk -t1 -c"$CONN" -d"$DUR" --latency "$2")
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  printf '%-28s %12s req/s   p50 %8s   p99 %8s\n' "$1" "$rps" "$p50" "$p99"
  echo "$rps" > "$WORK/$1.rps"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%FT%TZ)"
echo "wrk -t1 -c$CONN -d$DUR, GET / (the demo shop's home page, ~1.3 KiB)"
run shop-alone "$SHOP/"
run palisade-http "http://$PLAIN/"
run palisade-https "https://localhost:${HTTPS##*:}/"
awk -v a="$(cat "$WORK/shop-alone.rps")" -v b="$(cat "$WORK/palisade-http.rps")" -v c="$(cat "$WORK/palisade-https.rps")" \
  'BEGIN { printf "ratios: palisade-http/shop %.2f, palisade-https/shop %.2f\n", b/a, c/a }'
