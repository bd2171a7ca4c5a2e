#!/usr/bin/env bash
# Usage: benches/pairs.sh   (needs wrk and a release build: cargo build --release --bin palisade)
# Prints req/s per round for: all protections on, the same without the access log, and the
# same without the route rate limit, alternating so drift hits all three.
# Same-run pairs: access log on/off and rate limits on/off, all else equal (WAF, hardening, metrics).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/palisade}
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT
"$BIN" demo --dir "$W/demo" --http 127.0.0.1:0 --https 127.0.0.1:0 --admin 127.0.0.1:0 > "$W/demo.out" &
until grep -q '^ready ' "$W/demo.out"; do sleep 0.1; done
SHOP=$(grep -o 'http://127.0.0.1:[0-9]*' "$W/demo.out" | head -1)
mk() { # name access_log route
  local route=""
  [ "$3" = yes ] && route=$'[[sites.routes]]\nname = "everything"\npath = "/"\nrate_limit = { key = "ip", rate = "100000/s" }'
  cat > "$W/$1.toml" <<CONF
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
[sites.upstream.health_check]
enabled = false
[sites.waf]
mode = "block"
$route
[logging]
format = "json"
output = "$W/$1.log"
access_log = $2
CONF
}
addr() { until grep -q '^ready ' "$W/$1.out"; do sleep 0.1; done; grep '^ready ' "$W/$1.out" | sed 's/.*http=\([^ ]*\).*/\1/'; }
mk all true yes; mk nolog false yes; mk nolimit true no
for n in all nolog nolimit; do "$BIN" run --config "$W/$n.toml" > "$W/$n.out" & done
ALL=$(addr all); NOLOG=$(addr nolog); NOLIM=$(addr nolimit)
echo "machine: $(nproc) cores $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%FT%TZ); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t1 -c32 -d5s GET / (demo shop home page), 3 alternating rounds"
for r in 1 2 3; do
  for t in all:$ALL nolog:$NOLOG nolimit:$NOLIM; do
    n=${t%%:*}; a=${t#*:}
    rps=$(wrk -t1 -c32 -d5s "http://$a/" | awk '/Requests\/sec/ {print $2}')
    echo "$r $n $rps"
  done
done
