#!/usr/bin/env python3
"""Palisade load harness (issue 6): Palisade side by side with its peers, in one run.

    python3 benches/harness.py --mode quick     # CI: seconds per target, 1 round, temp folder
    python3 benches/harness.py --mode full      # report: several rounds, benches/runs/<date>-<host>/

Starts on loopback, each as a child process of this script:

    upstream      nginx serving a ~2 KiB static page (the shop stand-in)
    palisade      Palisade, every protection on      (benches/configs/palisade-all-on.toml)
    passthrough   the same binary, protections off   (benches/configs/palisade-passthrough.toml)
    pingora       bare Pingora: Pingora's own server with a proxy that only picks the upstream
                  (crates/palisade-gateway/examples/bare_pingora.rs; plain HTTP only), the floor
                  any Pingora-based proxy starts from on this machine
    nginx         nginx as a plain reverse proxy     (benches/configs/nginx-proxy.conf)
    modsec        nginx + ModSecurity v3 + OWASP CRS, paranoia 1, blocking
                                                     (nginx-proxy.conf + modsecurity.conf)

checks that each answers 200 (and that the protections are really on: the all-on Palisade and
ModSecurity block a SQL injection, the passthrough and nginx do not), then drives each with wrk
in four scenarios (plain HTTP and TLS, keep-alive and a new connection per request), alternating
the targets round-robin in every round so that drift on this shared machine hits all of them.

Reports, per target and scenario, the median over rounds of requests/s, p50 and p99 latency and
server CPU time per request; the peak RSS (VmHWM, nginx master + workers summed) of each server;
and the headline ratios Palisade/passthrough, Palisade/nginx and Palisade/(nginx + ModSecurity).
Everything needed to reproduce and audit the run goes into the run folder: exact commands,
rendered configs, tool versions, lscpu, load averages, raw wrk outputs, summary.md/.json and
results.csv.

Exit status: 0 when every target answered and every ratio could be computed; 1 otherwise (a
target that does not start, answers something else than 200, fails the protection probe, or
returns errors under load). Missing the performance targets is reported, not fatal, unless
--strict is given. Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

BENCHES = Path(__file__).resolve().parent
ROOT = BENCHES.parent
CONFIGS = BENCHES / "configs"

APT_PACKAGES = ["nginx-light", "libnginx-mod-http-modsecurity", "modsecurity-crs", "wrk"]
MODSEC_MODULE = "/usr/lib/nginx/modules/ngx_http_modsecurity_module.so"

# name -> (scheme, keep-alive?)  The first one is the headline.
SCENARIOS = {
    "http-ka": ("http", True),
    "https-ka": ("https", True),
    "http-close": ("http", False),
    "https-close": ("https", False),
}
# The upstream and bare Pingora are reference points, measured over plain HTTP only.
TARGETS = ["upstream", "palisade", "passthrough", "pingora", "nginx", "modsec"]
HTTP_ONLY = ("upstream", "pingora")
LABELS = {
    "upstream": "upstream (nginx static, direct)",
    "palisade": "Palisade, all protections on",
    "passthrough": "Palisade passthrough (same binary)",
    "pingora": "bare Pingora (reference, HTTP only)",
    "nginx": "nginx reverse proxy",
    "modsec": "nginx + ModSecurity + CRS (PL1)",
}
# (ratio name, denominator target, issue 6 target on the headline scenario)
RATIOS = [
    ("palisade/passthrough", "passthrough", 0.85),
    ("palisade/nginx", "nginx", 0.8),
    ("palisade/modsec", "modsec", 10.0),
]
MODES = {
    # rounds, seconds per wrk run, warm-up seconds per target and scenario (first round only)
    "quick": dict(rounds=1, duration=2, warmup=0),
    "full": dict(rounds=5, duration=6, warmup=2),
}
# A request the all-on Palisade and ModSecurity must block and the plain proxies must pass.
ATTACK_PATH = "/?id=1%27%20or%20%271%27%3D%271"
PAGE_BYTES = 2048


# --------------------------------------------------------------------------------------------
# small helpers


class HarnessError(Exception):
    """A failure that makes the run invalid (exit 1)."""


class Recorder:
    """Keeps the exact commands run, in order, for commands.txt."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, text: str) -> None:
        self.lines.append(text)

    def cmd(self, argv: list[str], cwd: Path | None = None) -> None:
        prefix = f"(cd {shlex.quote(str(cwd))} && " if cwd else ""
        suffix = ")" if cwd else ""
        self.lines.append(prefix + shlex.join(argv) + suffix)


REC = Recorder()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(argv: list[str], check: bool = True, record: bool = True, **kw) -> subprocess.CompletedProcess:
    if record:
        REC.cmd(argv, kw.get("cwd"))
    return subprocess.run(argv, check=check, text=True, capture_output=True, **kw)


def output_of(argv: list[str]) -> str:
    """Combined stdout+stderr of a version command, or why it failed."""
    try:
        p = subprocess.run(argv, text=True, capture_output=True, timeout=30)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable: {e}"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ConfigTemplate(Template):
    """Only `${name}` is a placeholder: nginx's own `$uri`, `$host` pass through untouched."""

    pattern = r"\$(?:(?P<escaped>(?!))|(?P<named>(?!))|\{(?P<braced>[a-z_][a-z0-9_]*)\}|(?P<invalid>(?!)))"


def render(template: str, out: Path, **values) -> Path:
    text = ConfigTemplate((CONFIGS / template).read_text()).substitute(**{k: str(v) for k, v in values.items()})
    out.write_text(text)
    return out


# --------------------------------------------------------------------------------------------
# /proc: memory and CPU of a process tree


def proc_tree(pid: int) -> list[int]:
    """pid and its direct children (nginx master + workers)."""
    pids = [pid]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                pids.append(int(d.name))
    return pids


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return total


CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# targets


@dataclass
class Target:
    name: str
    proc: subprocess.Popen | None = None
    http_port: int = 0
    https_port: int = 0
    admin_port: int = 0
    notes: list[str] = field(default_factory=list)

    def url(self, scheme: str) -> str:
        port = self.https_port if scheme == "https" else self.http_port
        return f"{scheme}://localhost:{port}/"

    def pids(self) -> list[int]:
        return proc_tree(self.proc.pid) if self.proc else []

    def peak_rss_kib(self) -> int:
        return sum(status_kib(p, "VmHWM") for p in self.pids())


class Lab:
    """Owns the work directory and every server process of the run."""

    def __init__(self, args: argparse.Namespace, work: Path, run_dir: Path) -> None:
        self.args = args
        self.work = work
        self.run_dir = run_dir
        self.targets: dict[str, Target] = {}
        self.cert = work / "tls" / "cert.pem"
        self.key = work / "tls" / "key.pem"
        self.rate_limit_variant: str | None = None

    # ---- setup

    def make_page_and_cert(self) -> None:
        # nginx workers run as an unprivileged user: the page must be readable by them (the
        # private key stays 0600 in a 0700 directory; only the root master reads it).
        self.work.chmod(0o755)
        html = self.work / "html"
        html.mkdir(parents=True)
        filler = "x" * (PAGE_BYTES - len("<html><body></body></html>\n"))
        (html / "index.html").write_text(f"<html><body>{filler}</body></html>\n")
        self.cert.parent.mkdir(mode=0o700)
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext",
             "subjectAltName=DNS:localhost", "-keyout", str(self.key), "-out", str(self.cert)])

    def start_nginx(self, name: str, template: str, workers: int, **values) -> Target:
        d = self.work / name
        d.mkdir()
        t = Target(name, http_port=free_port(), https_port=free_port())
        conf = render(template, d / "nginx.conf", dir=d, workers=workers, http_port=t.http_port,
                      https_port=t.https_port, cert=self.cert, key=self.key, **values)
        shutil.copy(conf, self.run_dir / "configs" / f"{name}-nginx.conf")
        argv = ["nginx", "-c", str(conf), "-p", str(d), "-e", str(d / "error.log"),
                "-g", "daemon off;"]
        REC.cmd(argv)
        t.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(d / "stderr", "w"))
        self.targets[name] = t
        self.wait_http(t, d / "stderr")
        return t

    def start_bare_pingora(self, upstream_port: int) -> Target:
        d = self.work / "pingora"
        d.mkdir()
        t = Target("pingora", http_port=free_port())
        argv = [str(self.args.bare_bin), f"127.0.0.1:{t.http_port}", f"127.0.0.1:{upstream_port}",
                str(self.args.threads)]
        REC.cmd(argv)
        t.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(d / "stderr", "w"))
        self.targets["pingora"] = t
        self.wait_http(t, d / "stderr")
        return t

    def palisade_check(self, conf: Path) -> subprocess.CompletedProcess:
        return run([str(self.args.bin), "check", "--config", str(conf)], check=False)

    def start_palisade(self, name: str, template: str, upstream_port: int, wrap: list[str] = (),
                       ready_within: float = 60) -> Target:
        """`wrap`: a command the binary runs under (e.g. valgrind), given more time to be ready."""
        d = self.work / name
        d.mkdir()
        values = dict(dir=d, threads=self.args.threads, cert=self.cert, key=self.key,
                      upstream_port=upstream_port, rate_limit="")
        conf = d / "palisade.toml"
        if name == "palisade":
            values["rate_limit"] = self.pick_rate_limit(d, template, values)
        render(template, conf, **values)
        check = self.palisade_check(conf)
        (self.run_dir / "configs" / f"{name}-check.txt").write_text(check.stdout + check.stderr)
        if check.returncode != 0:
            raise HarnessError(f"{name}: palisade check refused {conf}:\n{check.stdout}{check.stderr}")
        shutil.copy(conf, self.run_dir / "configs" / f"{name}.toml")
        out = d / "stdout"
        argv = [*wrap, str(self.args.bin), "run", "--config", str(conf)]
        REC.cmd(argv)
        t = Target(name)
        t.proc = subprocess.Popen(argv, stdout=open(out, "w"), stderr=open(d / "stderr", "w"))
        self.targets[name] = t
        deadline = time.time() + ready_within
        while time.time() < deadline:
            m = re.search(r"^ready http=\S+:(\d+) https=\S+:(\d+) admin=(\S+)", out.read_text(), re.M)
            if m:
                t.http_port, t.https_port = int(m.group(1)), int(m.group(2))
                admin = m.group(3)
                t.admin_port = int(admin.rsplit(":", 1)[1]) if ":" in admin else 0
                break
            if t.proc.poll() is not None:
                raise HarnessError(f"{name} exited with {t.proc.returncode}: {(d / 'stderr').read_text()[-2000:]}")
            time.sleep(0.1)
        else:
            raise HarnessError(f"{name} did not print its ready line within {ready_within:g} s")
        self.wait_http(t, d / "stderr")
        return t

    def pick_rate_limit(self, d: Path, template: str, values: dict) -> str:
        """The first rate-limit variant that `palisade check` accepts, or "" (and a note)."""
        variants = [v.strip() + "\n" for v in (CONFIGS / "palisade-rate-limit.toml").read_text().split("---")]
        for v in variants:
            body = "\n".join(l for l in v.splitlines() if not l.startswith("#")).strip() + "\n"
            probe = d / "rate-limit-probe.toml"
            render(template, probe, **{**values, "rate_limit": body})
            if self.palisade_check(probe).returncode == 0:
                self.rate_limit_variant = body.strip()
                probe.unlink()
                return body
            probe.unlink()
        self.rate_limit_variant = None
        return ""

    def wait_http(self, t: Target, stderr: Path) -> None:
        """Until GET / answers 200 (Palisade's first health check must pass), at most 30 s."""
        deadline, last = time.time() + 30, "no answer"
        while time.time() < deadline:
            if t.proc and t.proc.poll() is not None:
                raise HarnessError(f"{t.name} exited with {t.proc.returncode}: {stderr.read_text()[-2000:]}")
            try:
                status, _, _ = self.get(t, "http", "/")
                if status == 200:
                    return
                last = f"status {status}"
            except OSError as e:
                last = str(e)
            time.sleep(0.1)
        raise HarnessError(f"{t.name} does not answer 200 on 127.0.0.1:{t.http_port} ({last})")

    # ---- requests

    def get(self, t: Target, scheme: str, path: str) -> tuple[int, dict, bytes]:
        if scheme == "https":
            ctx = ssl.create_default_context(cafile=str(self.cert))
            c = http.client.HTTPSConnection("localhost", t.https_port, timeout=10, context=ctx)
        else:
            c = http.client.HTTPConnection("localhost", t.http_port, timeout=10)
        try:
            c.request("GET", path, headers={"User-Agent": "palisade-bench/1"})
            r = c.getresponse()
            body = r.read()
            headers = {k.lower(): v for k, v in r.getheaders()}
            if scheme == "https" and c.sock is not None:
                headers[":tls"] = f"{c.sock.version()} {c.sock.cipher()[0]}"
            return r.status, headers, body
        finally:
            c.close()

    def preflight(self, scenarios: list[str]) -> list[str]:
        """200 with the full page on every URL the load will hit; protections on where promised."""
        problems, notes = [], []
        for name, t in self.targets.items():
            for scheme in sorted({SCENARIOS[s][0] for s in scenarios}):
                if name in HTTP_ONLY and scheme == "https":
                    continue
                try:
                    status, headers, body = self.get(t, scheme, "/")
                except OSError as e:
                    problems.append(f"{name} {scheme}: {e}")
                    continue
                if status != 200 or len(body) < PAGE_BYTES:
                    problems.append(f"{name} {scheme}: status {status}, {len(body)} bytes")
                extra = f", {headers[':tls']}" if ":tls" in headers else ""
                notes.append(f"{name} {scheme} GET / -> {status}, {len(body)} bytes{extra}, "
                             f"server={headers.get('server', '-')}, "
                             f"hsts={'yes' if 'strict-transport-security' in headers else 'no'}")
            expect_block = name in ("palisade", "modsec")
            if name != "upstream":
                try:
                    status, _, _ = self.get(t, "http", ATTACK_PATH)
                except OSError as e:
                    problems.append(f"{name} attack probe: {e}")
                    continue
                notes.append(f"{name} GET {ATTACK_PATH} -> {status}")
                if expect_block and status != 403:
                    problems.append(f"{name}: SQL injection probe answered {status}, expected 403 (protections off?)")
                if not expect_block and status != 200:
                    problems.append(f"{name}: SQL injection probe answered {status}, expected 200 (bare proxy)")
        pal = self.targets.get("palisade")
        if pal and "https" in {SCENARIOS[s][0] for s in scenarios}:
            _, headers, _ = self.get(pal, "https", "/")
            if "strict-transport-security" not in headers or "server" in headers:
                problems.append("palisade: https response lacks HSTS or still has Server (hardening off?)")
        if problems:
            raise HarnessError("preflight failed:\n  " + "\n  ".join(problems))
        return notes

    def scrape_metrics(self) -> str:
        t = self.targets.get("palisade")
        if not t or not t.admin_port:
            return ""
        c = http.client.HTTPConnection("127.0.0.1", t.admin_port, timeout=10)
        try:
            c.request("GET", "/metrics")
            text = c.getresponse().read().decode(errors="replace")
        finally:
            c.close()
        keep = ("palisade_requests_total", "palisade_waf_matches_total", "palisade_tls_handshakes_total",
                "palisade_upstream_duration_seconds_count", "palisade_rate_limited", "palisade_redactions",
                "palisade_build_info")
        return "\n".join(l for l in text.splitlines() if l.startswith(keep)) + "\n"

    # ---- teardown

    def stop_all(self) -> None:
        for t in self.targets.values():
            if t.proc and t.proc.poll() is None:
                # Palisade drains on SIGINT; nginx stops fast on SIGTERM (SIGQUIT is graceful).
                # Pingora's own server stops at once on SIGINT (SIGTERM is its graceful drain).
                t.proc.send_signal(signal.SIGINT if t.name in ("palisade", "passthrough", "pingora")
                                   else signal.SIGTERM)
        for t in self.targets.values():
            if t.proc:
                try:
                    t.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    t.proc.kill()
                    t.proc.wait()


# --------------------------------------------------------------------------------------------
# wrk


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def parse_wrk(out: str) -> dict:
    r = {"rps": 0.0, "requests": 0, "p50_ms": None, "p99_ms": None, "socket_errors": 0, "non2xx3xx": 0}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        r["rps"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in", out):
        r["requests"] = int(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        if m := re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M):
            r[key] = to_ms(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        r["socket_errors"] = sum(int(x) for x in m.groups())
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        r["non2xx3xx"] = int(m.group(1))
    return r


def wrk_argv(args: argparse.Namespace, url: str, keepalive: bool, seconds: float) -> list[str]:
    argv = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{seconds:g}s", "--latency"]
    if not keepalive:
        argv += ["-H", "Connection: close"]
    return argv + [url]


# --------------------------------------------------------------------------------------------
# the run


def ensure_packages(install: bool) -> None:
    missing = []
    for pkg in APT_PACKAGES:
        p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], text=True, capture_output=True)
        if "install ok installed" not in p.stdout:
            missing.append(pkg)
    if not missing:
        return
    if not install:
        raise HarnessError(f"missing Debian packages: {' '.join(missing)} (drop --no-install to install them)")
    log(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    run(sudo + ["apt-get", "update", "-qq"], env=env)
    run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing, env=env)


def versions(args: argparse.Namespace) -> str:
    pkgs = output_of(["dpkg-query", "-W", "-f=${Package} ${Version}\n", "nginx-light",
                      "libnginx-mod-http-modsecurity", "libmodsecurity3", "modsecurity-crs", "wrk"])
    git = output_of(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    dirty = output_of(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return "\n".join([
        f"palisade: {output_of([str(args.bin), '--version'])} ({args.bin})",
        f"git: {git}{' (working tree has uncommitted changes)' if dirty else ''}",
        f"rustc: {output_of(['rustc', '--version'])}",
        f"wrk: {output_of(['wrk', '-v']).splitlines()[0]}",
        f"nginx: {output_of(['nginx', '-v'])}",
        f"openssl: {output_of(['openssl', 'version'])}",
        f"python: {sys.version.split()[0]}",
        f"kernel: {output_of(['uname', '-srvm'])}",
        "packages:", *("  " + l for l in pkgs.splitlines()),
    ]) + "\n"


def measure(args: argparse.Namespace, lab: Lab, mode: dict, scenarios: list[str], targets: list[str]) -> list[dict]:
    """Round-robin over targets inside every (round, scenario); the start rotates each round."""
    raw_dir = lab.run_dir / "raw"
    raw_dir.mkdir(exist_ok=True)
    access_log = lab.work / "palisade" / "palisade.log"
    rows = []
    for rnd in range(1, mode["rounds"] + 1):
        for scen in scenarios:
            scheme, keepalive = SCENARIOS[scen]
            eligible = [t for t in targets if not (t in HTTP_ONLY and scheme == "https")]
            shift = (rnd - 1) % len(eligible)
            for name in eligible[shift:] + eligible[:shift]:
                t = lab.targets[name]
                url = t.url(scheme)
                if rnd == 1 and mode["warmup"]:
                    run(wrk_argv(args, url, keepalive, mode["warmup"]), record=False)
                    if name == "palisade" and access_log.exists():
                        os.truncate(access_log, 0)  # count only the measured run's lines
                argv = wrk_argv(args, url, keepalive, mode["duration"])
                REC.cmd(argv)
                load = loadavg()
                pids = t.pids()
                ticks0 = cpu_ticks(pids)
                p = run(argv, check=False, record=False)
                ticks = cpu_ticks(pids) - ticks0
                out = p.stdout + p.stderr
                with open(raw_dir / f"{scen}.{name}.txt", "a") as f:
                    f.write(f"### round {rnd}, load average {load}\n$ {shlex.join(argv)}\n{out}\n")
                r = parse_wrk(out)
                r.update(round=rnd, scenario=scen, target=name, loadavg=load, wrk_exit=p.returncode,
                         cpu_us_per_req=round(ticks / CLK_TCK * 1e6 / r["requests"], 1) if r["requests"] else None)
                if name == "palisade" and access_log.exists():
                    # Count access lines, then truncate: keeps /tmp small over a long run. The
                    # writer appends, so it carries on at the new end of the file.
                    with open(access_log, "rb") as f:
                        r["access_lines"] = sum(1 for line in f if b'"palisade::access"' in line)
                    if not (lab.run_dir / "access-log-sample.jsonl").exists():
                        with open(access_log) as f:
                            sample = [l for l in f if "palisade::access" in l][:3]
                        (lab.run_dir / "access-log-sample.jsonl").write_text("".join(sample))
                    os.truncate(access_log, 0)
                rows.append(r)
                log(f"round {rnd} {scen:<11} {name:<11} {r['rps']:>9.0f} req/s  p50 {fmt_ms(r['p50_ms'])}"
                    f"  p99 {fmt_ms(r['p99_ms'])}  cpu {r['cpu_us_per_req']} us/req  load {load}")
    return rows


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else (f"{v * 1000:.0f} us" if v < 1 else f"{v:.2f} ms")


def summarise(rows: list[dict], scenarios: list[str], targets: list[str]) -> tuple[dict, list[str]]:
    problems: list[str] = []
    for r in rows:
        if r["wrk_exit"] != 0 or r["requests"] == 0:
            problems.append(f"{r['target']} {r['scenario']} round {r['round']}: wrk failed or no requests")
        elif r["non2xx3xx"]:
            problems.append(f"{r['target']} {r['scenario']} round {r['round']}: {r['non2xx3xx']} non-2xx/3xx answers")
        elif r["socket_errors"] > 0.01 * r["requests"]:
            problems.append(f"{r['target']} {r['scenario']} round {r['round']}: {r['socket_errors']} socket errors")
    med: dict = {}
    for scen in scenarios:
        for name in targets:
            rs = [r for r in rows if r["scenario"] == scen and r["target"] == name]
            if not rs:
                continue

            def m(key):
                vals = [r[key] for r in rs if r[key] is not None]
                return statistics.median(vals) if vals else None

            med.setdefault(scen, {})[name] = {
                "rps": m("rps"), "p50_ms": m("p50_ms"), "p99_ms": m("p99_ms"),
                "cpu_us_per_req": m("cpu_us_per_req"),
                "rps_rounds": [r["rps"] for r in rs],
            }
    ratios: dict = {}
    for scen, per in med.items():
        specs = [(rname, "palisade", den) for rname, den, _ in RATIOS]
        specs += [("palisade/upstream", "palisade", "upstream"), ("passthrough/pingora", "passthrough", "pingora")]
        for rname, num, den in specs:
            if den not in per or num not in per:
                continue
            n, d = per[num].get("rps"), per[den].get("rps")
            if not n or not d:
                problems.append(f"{scen}: ratio {rname} cannot be computed")
                continue
            # Per-round ratios too: paired runs seconds apart are less exposed to drift.
            pr = [a / b for a, b in zip(per[num]["rps_rounds"], per[den]["rps_rounds"]) if b]
            ratios.setdefault(scen, {})[rname] = {"ratio": n / d, "per_round": pr}
    return {"medians": med, "ratios": ratios}, problems


def write_summary(lab: Lab, args, mode_name: str, mode: dict, scenarios, targets, rows, summary,
                  problems, rss, meta) -> str:
    headline = scenarios[0]
    med, ratios = summary["medians"], summary["ratios"]
    L = []
    L.append(f"# Palisade load harness: {mode_name} run, {meta['started']}")
    L.append("")
    L.append(f"Machine: {meta['host']}, {meta['cpu']}, {os.cpu_count()} CPUs, "
             f"{meta['mem_gib']:.0f} GiB. Load average (1/5/15 min) at start {meta['load_start']}, "
             f"at end {meta['load_end']}; during the wrk runs the 1-min value ranged "
             f"{meta['load_min']}-{meta['load_max']} (the machine is shared).")
    L.append(f"Load: `wrk -t{args.wrk_threads} -c{args.connections} -d{mode['duration']}s --latency`, "
             f"GET / of a {PAGE_BYTES + 12} B page, {mode['rounds']} round(s), targets alternated "
             f"round-robin (start rotated each round); medians over rounds. Palisade threads = "
             f"nginx proxy workers = {args.threads}; upstream nginx workers = {args.upstream_workers}.")
    L.append(f"Rate limit in the all-on config: "
             f"{'`' + lab.rate_limit_variant.replace(chr(10), ' ') + '`' if lab.rate_limit_variant else 'not available (palisade check refused every variant in configs/palisade-rate-limit.toml)'}.")
    L.append("")
    L.append(f"## Headline: {headline} (small GET, keep-alive)")
    L.append("")
    L.append("| ratio | value | target | met? | per-round range |")
    L.append("|---|---:|---:|---|---|")
    for rname, _, goal in RATIOS:
        r = ratios.get(headline, {}).get(rname)
        if r:
            rng = f"{min(r['per_round']):.2f}-{max(r['per_round']):.2f}" if r["per_round"] else "-"
            L.append(f"| {rname} | {r['ratio']:.2f} | ≥ {goal:g} | {'yes' if r['ratio'] >= goal else '**no**'} | {rng} |")
    pal, ms = med.get(headline, {}).get("palisade"), med.get(headline, {}).get("modsec")
    if pal and ms and pal["p99_ms"] is not None and ms["p99_ms"] is not None:
        L.append(f"| p99 palisade vs modsec | {fmt_ms(pal['p99_ms'])} vs {fmt_ms(ms['p99_ms'])} | lower | "
                 f"{'yes' if pal['p99_ms'] < ms['p99_ms'] else '**no**'} | |")
    L.append("")
    for scen in scenarios:
        L.append(f"## {scen} ({'TLS' if SCENARIOS[scen][0] == 'https' else 'plain HTTP'}, "
                 f"{'keep-alive' if SCENARIOS[scen][1] else 'Connection: close, a new connection per request'})")
        L.append("")
        L.append("| target | req/s (median) | p50 | p99 | server CPU µs/req | req/s per round |")
        L.append("|---|---:|---:|---:|---:|---|")
        for name in targets:
            v = med.get(scen, {}).get(name)
            if v:
                L.append(f"| {LABELS[name]} | {v['rps']:.0f} | {fmt_ms(v['p50_ms'])} | {fmt_ms(v['p99_ms'])} | "
                         f"{v['cpu_us_per_req'] if v['cpu_us_per_req'] is not None else '-'} | "
                         f"{', '.join(f'{x:.0f}' for x in v['rps_rounds'])} |")
        rs = ratios.get(scen, {})
        if rs:
            L.append("")
            L.append("Ratios: " + ", ".join(f"{k} {v['ratio']:.2f}" for k, v in rs.items()))
        L.append("")
    L.append("## Peak RSS (VmHWM at the end of the run; nginx: master + workers)")
    L.append("")
    L.append("| target | peak RSS |")
    L.append("|---|---:|")
    for name in targets:
        L.append(f"| {LABELS[name]} | {rss.get(name, 0) / 1024:.1f} MiB |")
    L.append("")
    L.append("## Checks")
    L.append("")
    L.extend(f"- {n}" for n in meta["preflight"])
    if "access_lines" in meta:
        L.append(f"- all-on Palisade wrote {meta['access_lines']} JSON access lines for {meta['palisade_requests']} "
                 f"requests sent by wrk (sample: access-log-sample.jsonl; metrics: metrics-palisade.txt)")
    L.append("")
    L.append(f"Result: {'OK' if not problems else 'FAILED'}")
    L.extend(f"- {p}" for p in problems)
    L.append("")
    L.append("Files: `commands.txt` (every command, in order), `configs/` (rendered configs, `palisade check` "
             "output), `versions.txt`, `lscpu.txt`, `raw/` (wrk outputs, one file per scenario and target, "
             "all rounds), `results.csv` (one row per wrk run), `summary.json`.")
    text = "\n".join(L) + "\n"
    (lab.run_dir / "summary.md").write_text(text)
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=MODES, default="quick")
    ap.add_argument("--rounds", type=int, help="override the mode's rounds")
    ap.add_argument("--duration", type=float, help="override the mode's seconds per wrk run")
    ap.add_argument("--out", type=Path, help="run folder (full: benches/runs/<UTC date>-<host>; quick: a temp dir)")
    ap.add_argument("--bin", type=Path, default=ROOT / "target/release/palisade", help="palisade binary")
    ap.add_argument("--bare-bin", type=Path, default=ROOT / "target/release/examples/bare_pingora",
                    help="bare Pingora reference binary")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build --release first")
    ap.add_argument("--no-install", action="store_true", help="fail instead of apt-get installing missing packages")
    ap.add_argument("--threads", type=int, default=2, help="Palisade threads and nginx proxy workers (default 2)")
    ap.add_argument("--upstream-workers", type=int, default=1)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset; the first is the headline")
    ap.add_argument("--hold", type=float, default=0,
                    help="after measuring, keep the servers up this many seconds (to attach a profiler)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, nginx state)")
    ap.add_argument("--strict", action="store_true", help="also exit 1 when a performance target is missed")
    args = ap.parse_args()

    mode = dict(MODES[args.mode])
    if args.rounds:
        mode["rounds"] = args.rounds
    if args.duration:
        mode["duration"] = args.duration
    scenarios = [s for s in args.scenarios.split(",") if s]
    if unknown := [s for s in scenarios if s not in SCENARIOS]:
        ap.error(f"unknown scenario(s) {unknown}; known: {list(SCENARIOS)}")
    targets = list(TARGETS)

    started = dt.datetime.now(dt.timezone.utc)
    host = socket.gethostname().split(".")[0]
    if args.out:
        run_dir = args.out
    elif args.mode == "full":
        run_dir = BENCHES / "runs" / f"{started:%Y-%m-%dT%H%MZ}-{host}"
    else:
        run_dir = Path(tempfile.mkdtemp(prefix="palisade-bench-quick-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "configs").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="palisade-bench-work-"))
    log(f"run folder {run_dir}; work dir {work}")
    REC.note(f"# {started:%Y-%m-%dT%H:%M:%SZ} python3 {shlex.join(sys.argv)}")

    # Stop cleanly on SIGTERM too (and on SIGINT even when started in the background, where it
    # is ignored by default): the finally below stops every server this run started.
    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)

    lab = Lab(args, work, run_dir)
    problems: list[str] = []
    try:
        ensure_packages(not args.no_install)
        if not args.no_build:
            log("cargo build --release --bin palisade")
            p = run(["cargo", "build", "--release", "--bin", "palisade"], check=False, cwd=ROOT)
            if p.returncode != 0:
                raise HarnessError("cargo build failed:\n" + p.stderr[-3000:])
            log("cargo build --release -p palisade-gateway --example bare_pingora")
            p = run(["cargo", "build", "--release", "-p", "palisade-gateway", "--example", "bare_pingora"],
                    check=False, cwd=ROOT)
            if p.returncode != 0:
                raise HarnessError("cargo build failed:\n" + p.stderr[-3000:])
        for b in (args.bin, args.bare_bin):
            if not b.exists():
                raise HarnessError(f"{b} does not exist (build it, or pass --bin / --bare-bin)")
        meta = {
            "started": f"{started:%Y-%m-%d %H:%M:%SZ}", "host": host,
            "cpu": next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                         if l.startswith("model name")), "?"),
            "mem_gib": mem_total_kib() / 1024 / 1024, "load_start": loadavg(),
        }
        (run_dir / "versions.txt").write_text(versions(args))
        (run_dir / "lscpu.txt").write_text(output_of(["lscpu"]) + "\n")

        log("starting targets")
        lab.make_page_and_cert()
        up = lab.start_nginx("upstream", "nginx-upstream.conf", args.upstream_workers, html=work / "html")
        lab.start_palisade("palisade", "palisade-all-on.toml", up.http_port)
        lab.start_palisade("passthrough", "palisade-passthrough.toml", up.http_port)
        lab.start_bare_pingora(up.http_port)
        common = dict(upstream_port=up.http_port)
        lab.start_nginx("nginx", "nginx-proxy.conf", args.threads, modsec_module="", modsec_server="", **common)
        mconf = work / "modsecurity.conf"
        shutil.copy(CONFIGS / "modsecurity.conf", mconf)
        shutil.copy(mconf, run_dir / "configs" / "modsecurity.conf")
        lab.start_nginx("modsec", "nginx-proxy.conf", args.threads,
                        modsec_module=f"load_module {MODSEC_MODULE};",
                        modsec_server=f"modsecurity on; modsecurity_rules_file {mconf};", **common)
        meta["preflight"] = lab.preflight(scenarios)
        if lab.rate_limit_variant is None:
            meta["preflight"].append("rate limits: not accepted by this build's `palisade check`; all-on runs without them")
        for n in meta["preflight"]:
            log("  " + n)

        log(f"measuring: {mode['rounds']} round(s) x {len(scenarios)} scenario(s), {mode['duration']:g} s per run")
        rows = measure(args, lab, mode, scenarios, targets)
        (run_dir / "metrics-palisade.txt").write_text(lab.scrape_metrics())
        rss = {name: t.peak_rss_kib() for name, t in lab.targets.items()}
        if args.hold:
            log(f"holding the servers for {args.hold:g} s: " + ", ".join(
                f"{n} pid {t.proc.pid} http {t.http_port} https {t.https_port}" for n, t in lab.targets.items()))
            time.sleep(args.hold)
    except HarnessError as e:
        log(f"FAILED: {e}")
        lab.stop_all()
        (run_dir / "commands.txt").write_text("\n".join(REC.lines) + "\n")
        return 1
    finally:
        lab.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    summary, problems = summarise(rows, scenarios, targets)
    loads = [float(r["loadavg"].split()[0]) for r in rows]
    meta.update(load_end=loadavg(), load_min=min(loads), load_max=max(loads))
    pal_rows = [r for r in rows if r["target"] == "palisade" and "access_lines" in r]
    if pal_rows:
        meta["access_lines"] = sum(r["access_lines"] for r in pal_rows)
        meta["palisade_requests"] = sum(r["requests"] for r in pal_rows)
    text = write_summary(lab, args, args.mode, mode, scenarios, targets, rows, summary, problems, rss, meta)
    with open(run_dir / "results.csv", "w", newline="") as f:
        cols = ["round", "scenario", "target", "rps", "requests", "p50_ms", "p99_ms", "cpu_us_per_req",
                "socket_errors", "non2xx3xx", "loadavg", "wrk_exit", "access_lines"]
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    headline = scenarios[0]
    goals_met = all(summary["ratios"].get(headline, {}).get(n, {}).get("ratio", 0) >= g for n, _, g in RATIOS)
    (run_dir / "summary.json").write_text(json.dumps({
        "mode": args.mode, "meta": meta, "rate_limit": lab.rate_limit_variant,
        "settings": {**mode, "connections": args.connections, "wrk_threads": args.wrk_threads,
                     "threads": args.threads, "upstream_workers": args.upstream_workers},
        "headline_scenario": headline, "targets_met": goals_met,
        "peak_rss_kib": rss, **summary, "problems": problems, "runs": rows,
    }, indent=1) + "\n")
    (run_dir / "commands.txt").write_text("\n".join(REC.lines) + "\n")
    print(text)
    log(f"run folder: {run_dir}")
    if problems:
        return 1
    if args.strict and not goals_met:
        log("performance targets missed (--strict)")
        return 1
    return 0


def mem_total_kib() -> int:
    """MemTotal in KiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
