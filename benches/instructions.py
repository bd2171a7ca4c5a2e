#!/usr/bin/env python3
"""User-space instructions per proxied request, counted by callgrind: a figure that does not move
with the load on a shared machine, unlike requests/s.

    python3 benches/instructions.py                 # all-on and passthrough, 10 s of load each
    python3 benches/instructions.py --seconds 5 --keep

Starts the harness's static upstream (nginx), then, for the all-on and the passthrough configs of
the harness (one worker thread each), runs `palisade` under `valgrind --tool=callgrind` with
instrumentation off, sends one warm-up request, switches instrumentation on, drives
`wrk -t1 -c4` for the given time, dumps the counts and divides the total by the requests wrk
completed. Start-up (config, WAF compilation, certificates) is not counted; the kernel is not
either (callgrind sees user space only). Needs valgrind (installed with apt-get when missing)
and a release build (`cargo build --release --bin palisade`).

Prints one line per config and the top inclusive costs of Palisade's own phases, and keeps the
callgrind files (`--keep`) for `callgrind_annotate`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402  (the same upstream, configs and certificate as the load harness)


def ensure_valgrind() -> None:
    if shutil.which("valgrind") and shutil.which("callgrind_control"):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "valgrind"], check=True, env=env)


def annotate(path: Path, inclusive: bool) -> str:
    argv = ["callgrind_annotate"] + (["--inclusive=yes"] if inclusive else []) + [str(path)]
    return subprocess.run(argv, text=True, capture_output=True, check=True).stdout


def total(text: str) -> int:
    m = re.search(r"^\s*([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS", text, re.M)
    if not m:
        raise harness.HarnessError("callgrind_annotate printed no total")
    return int(m.group(1).replace(",", ""))


def measure(args, lab, name: str, template: str, upstream_port: int) -> dict:
    cg = lab.work / f"{name}.callgrind.out"
    wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={cg}"]
    # The harness's own start (config check, rate limit, ready line, a first GET / as warm-up).
    t = lab.start_palisade(name, template, upstream_port, wrap=wrap, ready_within=180)
    try:
        subprocess.run(["callgrind_control", "-i", "on", str(t.proc.pid)], check=True, capture_output=True)
        wrk = subprocess.run(["wrk", "-t1", "-c4", f"-d{args.seconds}s", t.url(args.scheme)], text=True,
                             capture_output=True, check=True).stdout
        subprocess.run(["callgrind_control", "-d", str(t.proc.pid)], check=True, capture_output=True)
    finally:
        t.proc.send_signal(2)
        t.proc.wait(timeout=60)
    m = re.search(r"(\d+) requests in", wrk)
    requests = int(m.group(1)) if m else 0
    if not requests or "Non-2xx" in wrk:
        raise harness.HarnessError(f"{name}: wrk completed no (or failing) requests:\n{wrk}")
    dump = sorted(p for p in lab.work.iterdir() if p.name.startswith(f"{cg.name}."))[0]
    instructions = total(annotate(dump, False))
    phases = []
    for line in annotate(dump, True).splitlines():
        if m := re.match(r"^\s*([\d,]+)\s+\([\d. ]+%\)\s+\?\?\?:(.*?) \[", line):
            fn = m.group(2)
            if "EdgeProxy as pingora_proxy::proxy_trait::ProxyHttp>::" in fn or fn in (
                    "palisade_waf::engine::Engine::inspect", "palisade_redact::writer::write_redacted",
                    "palisade_headers::Hardening::apply", "palisade_limits::limiter::Limiter::check_key"):
                phases.append((int(m.group(1).replace(",", "")) // requests, fn))
    label = "all-on" if name == "palisade" else name
    return dict(name=label, requests=requests, per_request=instructions // requests, phases=phases, dump=dump)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=Path, default=harness.ROOT / "target/release/palisade")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--scheme", choices=("http", "https"), default="http",
                    help="https: keep-alive TLS 1.3 (the 4 handshakes of wrk's connections are counted, spread over thousands of requests)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (callgrind files)")
    args = ap.parse_args()
    if not args.bin.exists():
        print(f"{args.bin} does not exist: cargo build --release --bin palisade", file=sys.stderr)
        return 1
    ensure_valgrind()
    harness.ensure_packages(True)
    work = Path(tempfile.mkdtemp(prefix="palisade-instructions-"))
    hargs = argparse.Namespace(bin=args.bin, threads=1)
    lab = harness.Lab(hargs, work, work)
    (work / "configs").mkdir()
    try:
        lab.make_page_and_cert()
        up = lab.start_nginx("upstream", "nginx-upstream.conf", 1, html=work / "html")
        results = [measure(args, lab, n, t, up.http_port)
                   for n, t in (("palisade", "palisade-all-on.toml"), ("passthrough", "palisade-passthrough.toml"))]
    except (harness.HarnessError, subprocess.CalledProcessError) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        lab.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"# user-space instructions per request ({args.scheme}, callgrind, wrk -t1 -c4 -d{args.seconds}s GET / of a "
          f"{harness.PAGE_BYTES} B page, 1 worker thread)")
    for r in results:
        print(f"{r['name']:<12} {r['per_request']:>8,} per request  ({r['requests']} requests)")
        for cost, fn in sorted(r["phases"], reverse=True)[:8]:
            print(f"    {cost:>8,}  {fn}")
    a, p = results[0]["per_request"], results[1]["per_request"]
    print(f"passthrough instructions / all-on instructions: {p / a:.2f} (what the all-on/passthrough "
          f"throughput ratio would be if user space were all the work; the kernel's share narrows the gap)")
    if args.keep:
        print(f"callgrind files kept under {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
