#!/usr/bin/env python3
"""Tiny HTTP load generator (aiohttp, asyncio) usable against any model server.

Modes:
  seq   N requests one after another on one keep-alive connection -> p50/p99 latency
  conc  C concurrent connections, each sending back-to-back requests for D seconds
        -> throughput (req/s) and latency percentiles
  wrk   the same closed-loop concurrent test driven by `wrk` (C, lighter client), if installed

Only loopback targets are allowed (the benchmark machines have no other targets).
Every run is bounded in count and in time.

CLI example:
  python loadgen.py --url http://127.0.0.1:5055/invocations --body-file row.json --mode seq --n 2000
  python loadgen.py --url http://127.0.0.1:5055/invocations --body-file row.json --mode conc -c 32 -d 10

Prints one JSON line.  Importable: run_seq(...), run_conc(...).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from urllib.parse import urlparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, summarize_ms

HEADERS = {"Content-Type": "application/json"}


def _check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise SystemExit(f"refusing non-loopback target {host!r}")


def _loop_name() -> str:
    try:
        import uvloop  # noqa: F401

        return "uvloop"
    except ImportError:
        return "asyncio"


def _run(coro):
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


async def _seq(url: str, body: bytes, n: int, timeout_s: float, check=None):
    import aiohttp

    lat, errors, first = [], 0, None
    conn = aiohttp.TCPConnector(limit=1)
    to = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=conn, timeout=to) as s:
        t_all = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            try:
                async with s.post(url, data=body, headers=HEADERS) as r:
                    payload = await r.read()
                    ok = r.status == 200
            except Exception:
                ok, payload = False, b""
            lat.append(time.perf_counter() - t)
            if not ok:
                errors += 1
            elif first is None:
                first = payload
        el = time.perf_counter() - t_all
    return lat, errors, el, first


async def _conc(
    url: str, body: bytes, concurrency: int, duration_s: float, max_requests: int, timeout_s: float
):
    import aiohttp

    lat: list[float] = []
    errors = 0
    sent = 0
    conn = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    to = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=conn, timeout=to) as s:
        t_all = time.perf_counter()
        deadline = t_all + duration_s

        async def worker():
            nonlocal errors, sent
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                t = time.perf_counter()
                try:
                    async with s.post(url, data=body, headers=HEADERS) as r:
                        await r.read()
                        ok = r.status == 200
                except Exception:
                    ok = False
                lat.append(time.perf_counter() - t)
                if not ok:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        el = time.perf_counter() - t_all
    return lat, errors, el


def run_seq(url: str, body: bytes, n: int = 2000, timeout_s: float = 30.0) -> dict:
    _check_loopback(url)
    lat, errors, el, first = _run(_seq(url, body, n, timeout_s))
    return {
        "mode": "seq",
        "client": f"aiohttp/{_loop_name()}",
        "requests": n,
        "errors": errors,
        "seconds": round(el, 3),
        "req_per_s": round(n / el, 1),
        **summarize_ms(lat),
        "_first_response": first,
    }


def run_conc(
    url: str,
    body: bytes,
    concurrency: int = 32,
    duration_s: float = 10.0,
    max_requests: int = 1_000_000,
    timeout_s: float = 30.0,
) -> dict:
    _check_loopback(url)
    lat, errors, el = _run(_conc(url, body, concurrency, duration_s, max_requests, timeout_s))
    return {
        "mode": "conc",
        "client": f"aiohttp/{_loop_name()}",
        "concurrency": concurrency,
        "duration_s": duration_s,
        "requests": len(lat),
        "errors": errors,
        "seconds": round(el, 3),
        "req_per_s": round(len(lat) / el, 1),
        **summarize_ms(lat),
    }


_WRK_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.body = f:read("*all")
f:close()
"""


def _wrk_ms(tok: str) -> float:
    for unit, mult in (("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 6e4)):
        if tok.endswith(unit):
            return float(tok[: -len(unit)]) * mult
    return float(tok)


def run_wrk(url: str, body_file: str, connections: int = 32, duration_s: int = 10, threads: int = 1) -> dict:
    """Same as conc mode but with the C load generator wrk (Debian package), if installed."""
    import re
    import shutil
    import subprocess
    import tempfile

    _check_loopback(url)
    wrk = shutil.which("wrk")
    if not wrk:
        return {"mode": "wrk", "error": "wrk not installed (apt-get install -y wrk)"}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lf:
        lf.write(_WRK_LUA)
        lua = lf.name
    try:
        env = dict(os.environ, WRK_BODY_FILE=os.path.abspath(body_file))
        cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{int(duration_s)}s", "--latency", "-s", lua, url]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration_s + 30, check=False)
    finally:
        os.unlink(lua)
    out = p.stdout
    res = {"mode": "wrk", "client": f"wrk -t{threads}", "concurrency": connections, "duration_s": duration_s}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["req_per_s"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["errors"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    if m:
        res["socket_errors"] = m.group(1).strip()
    for q in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{q}%\s+(\S+)", out, re.M)
        if m:
            res[f"p{q}_ms"] = round(_wrk_ms(m.group(1)), 3)
    if res["req_per_s"] is None:
        res["raw"] = (out + p.stderr)[-2000:]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--body-file", required=True)
    ap.add_argument("--mode", choices=["seq", "conc", "wrk"], default="seq")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("-c", "--concurrency", type=int, default=32)
    ap.add_argument("-d", "--duration", type=float, default=10.0)
    args = ap.parse_args()
    with open(args.body_file, "rb") as f:
        body = f.read()
    if args.mode == "seq":
        out = run_seq(args.url, body, args.n)
        out.pop("_first_response", None)
    elif args.mode == "wrk":
        out = run_wrk(args.url, args.body_file, args.concurrency, int(args.duration))
    else:
        out = run_conc(args.url, body, args.concurrency, args.duration)
    out["body_bytes"] = len(body)
    emit(out)


if __name__ == "__main__":
    main()
