"""Fleet: thousands of gates uploading small batches to 1, 2 and 4 registry processes.

    .venv/bin/python -m bench.fleet [--gates 2000] [--seconds 8] [--processes 1,2,4] [--full]
                                    [--pg postgresql://postgres@127.0.0.1/test]

N simulated gates (own token, own stream each) send one or two events per
request at a fixed arrival rate (open loop: request k is due at t0 + k/rate
whatever the replies do; latency counts from the due time, so a slow server
cannot hide its queue) to P registry processes (bench/fleet_server.py) on one
PostgreSQL. The load generator is its own process: asyncio with a minimal
HTTP/1.1 keep-alive client (httpx cost the generator ~8 ms of CPU a request
here, more than the server, and the bench measured the generator).
P > 1 sits behind nginx (round robin, keep-alive upstreams) when nginx is
installed, else the load generator spreads gates over the ports itself.

Per process count: capacity (requests/s of a closed loop that keeps the
servers saturated), then open-loop runs at 50% and 80% of it: requests/s,
p50/p99, server CPU per request (utime+stime of the server processes from
/proc over the run, divided by the requests served).

Anchor, measured in the same run: one server in --baseline mode and one in
normal mode take the same open-loop rate of 2-event uploads; the ratio of
their CPU per request is the figure. --baseline is the request path before
issue 14: uvicorn's h11 parser and asyncio loop (what a fresh install got:
httptools and uvloop were not dependencies) and CHECKPOINT_UPLOAD_BASELINE=1
(sync/server/hotpath.py: no gate-token cache, a ping per pooled checkout, the
old five-round-trip ingest on a worker thread). A third server, the old code
on httptools/uvloop, is printed too: what the code changes alone save.

Targets (exit 1 on a miss): CPU per 2-event request <= 1/3 of the anchor;
p99 < 1 s at 80% of capacity; capacity grows by 10% or more from P to the
next process count when the P-process run left the cores less than 85% busy
(/proc/stat, everyone's work), and never falls below 75% of the best so far;
0 lost and 0 duplicated events (counted on the server by (stream, seq)
against what the gates saw acknowledged).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sync import free_port, pg_schema  # noqa: E402

WALL = 1_769_932_800_000_000_000
EVENT = {
    "kind": "decision", "time": "2026-02-01T08:00:00+00:00", "gate": "east-1", "direction": "in",
    "pass_id": "P7Q2K9", "person_id": "r-101", "object_c": 36.1, "ambient_c": 21.4, "offset_c": 0.5,
    "body_c": 36.6, "threshold_c": 37.3, "decision": "admit", "flagged": False, "reasons": ["ok"],
    "boot_id": "bench", "wall_time": WALL, "clock_synced": True, "operator": "guard-7", "detail": {},
}
CPU_RATIO_TARGET = 1 / 3
FREE_CORES_BUSY = 0.85  # below this share of all cores busy, a capacity run left cores free
COLLAPSE = 0.75  # more processes must keep at least this share of the best capacity so far
P99_TARGET_S = 1.0
TICKS = os.sysconf("SC_CLK_TCK")


# --- the load generator (its own process: python -m bench.fleet --loadgen JOBFILE) ---------


class Http:
    """A minimal HTTP/1.1 client over a few keep-alive connections to one
    server: a request takes an idle connection or opens one (up to `size`)."""

    def __init__(self, url: str, size: int, timeout_s: float):
        host, port = url.split("://", 1)[1].split(":")
        self.host, self.port, self.timeout_s = host, int(port), timeout_s
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(size)

    async def post(self, path: str, token: str, body: bytes) -> tuple[int, bytes]:
        async with self.slots:
            reused = bool(self.idle)
            conn = self.idle.pop() if reused else await asyncio.open_connection(self.host, self.port)
            try:
                status, reply = await asyncio.wait_for(self._exchange(conn, path, token, body), self.timeout_s)
            except (IndexError, ConnectionError, asyncio.IncompleteReadError):
                conn[1].close()
                if not reused:
                    raise
                # The server closed this idle keep-alive connection before our
                # request (uvicorn's keep-alive timeout): once more on a new
                # one, as HTTP clients do. Safe: the watermark makes an upload
                # idempotent.
                conn = await asyncio.open_connection(self.host, self.port)
                try:
                    status, reply = await asyncio.wait_for(self._exchange(conn, path, token, body), self.timeout_s)
                except BaseException:
                    conn[1].close()
                    raise
            except BaseException:
                conn[1].close()  # a timed-out or broken connection is not reused
                raise
            self.idle.append(conn)
            return status, reply

    async def _exchange(self, conn, path: str, token: str, body: bytes) -> tuple[int, bytes]:
        reader, writer = conn
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await reader.readexactly(length)

    def close(self) -> None:
        for _reader, writer in self.idle:
            writer.close()


class GateSim:
    def __init__(self, token: str, stream: str, client: Http):
        self.token, self.stream, self.client = token, stream, client
        self.next_seq, self.acked, self.busy = 1, 0, False


async def _send(gate: GateSim, events: int, due: float, out: dict) -> None:
    gate.busy = True
    batch = [{**EVENT, "seq": gate.next_seq + i, "mono_ns": gate.next_seq + i} for i in range(events)]
    body = json.dumps({"first_seq": gate.next_seq, "events": batch}).encode()
    try:
        status, reply = await gate.client.post(f"/api/v1/streams/{gate.stream}/events", gate.token, body)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
        # A timeout or dropped connection: re-sent next turn, like a kiosk.
        out["errors"][type(exc).__name__] = out["errors"].get(type(exc).__name__, 0) + 1
        return
    finally:
        gate.busy = False
    out["latencies"].append(time.monotonic() - due)
    if status == 200:
        acked = json.loads(reply)["acked_through"]
        gate.acked = max(gate.acked, acked)
        gate.next_seq = acked + 1
        out["ok"] += 1
    else:
        out["errors"][str(status)] = out["errors"].get(str(status), 0) + 1
        if status == 409:
            gate.next_seq = json.loads(reply)["acked_through"] + 1


async def _loadgen(job: dict) -> dict:
    clients = [Http(u, job["connections"], job["timeout_s"]) for u in job["urls"]]
    gates = [GateSim(t, f"gate-{i}", clients[i % len(clients)]) for i, t in enumerate(job["tokens"])]
    for gate in gates:  # each gate carries on its stream where the previous run left it
        gate.acked = job["start"].get(gate.stream, 0)
        gate.next_seq = gate.acked + 1
    out = {"ok": 0, "errors": {}, "latencies": [], "skipped_busy": 0}
    pick = (lambda: 2) if job["events"] == "2" else (lambda: random.choice((1, 2)))
    tasks: set[asyncio.Task] = set()
    print("go", flush=True)
    t0 = time.monotonic()
    end = t0 + job["seconds"]
    k = 0
    if job["rate"]:  # open loop
        while True:
            due = t0 + k / job["rate"]
            if due >= end:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            gate = gates[k % len(gates)]
            k += 1
            if gate.busy:  # its previous upload is still out: a kiosk waits for it
                out["skipped_busy"] += 1
                continue
            task = asyncio.create_task(_send(gate, pick(), due, out))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    elif job.get("passes"):  # warm-up: every gate uploads `passes` times, `concurrency` at once
        async def warm(w: int):
            for _ in range(job["passes"]):
                for gate in gates[w::job["concurrency"]]:
                    await _send(gate, pick(), time.monotonic(), out)
        await asyncio.gather(*(warm(w) for w in range(job["concurrency"])))
    else:  # closed loop: `concurrency` requests always in flight
        # Each worker owns its own gates (i = w mod concurrency), so no worker
        # ever finds its gate busy and spins without yielding to the loop.
        async def worker(w: int):
            own = gates[w::job["concurrency"]]
            i = 0
            while own and time.monotonic() < end:
                await _send(own[i % len(own)], pick(), time.monotonic(), out)
                i += 1
        await asyncio.gather(*(worker(w) for w in range(job["concurrency"])))
    if tasks:
        await asyncio.wait(tasks)
    out["elapsed"] = time.monotonic() - t0
    print("done", flush=True)
    for c in clients:
        c.close()
    out["acked"] = {g.stream: g.acked for g in gates if g.acked}
    return out


# --- processes -------------------------------------------------------------------------------


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / TICKS


class Servers:
    """P registry processes on one database, behind nginx when there is one."""

    def __init__(self, db_url: str, count: int, workdir: Path, mode: str = "now"):
        self.db_url, self.count, self.workdir, self.mode = db_url, count, workdir, mode
        self.procs: list[subprocess.Popen] = []
        self.nginx: subprocess.Popen | None = None

    def __enter__(self):
        ports = [free_port() for _ in range(self.count)]
        log = open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "a")
        for port in ports:
            cmd = [sys.executable, "-m", "bench.fleet_server", "--db", self.db_url, "--port", str(port)]
            flags = {"baseline": ["--baseline"], "baseline-code": ["--baseline-code"]}.get(self.mode, [])
            self.procs.append(subprocess.Popen(cmd + flags, cwd=ROOT,
                                               env={**os.environ, "PYTHONPATH": str(ROOT)},
                                               stdout=subprocess.DEVNULL, stderr=log))
        direct = [f"http://127.0.0.1:{p}" for p in ports]
        for url in direct:
            _wait_up(url, self.procs)
        self.urls, self.proxy = direct, "none (one process)"
        if self.count > 1 and shutil.which("nginx"):
            self.urls, self.proxy = [self._start_nginx(ports)], "nginx round robin"
        elif self.count > 1:
            self.proxy = "none: the load generator spreads gates over the ports (nginx not installed)"
        return self

    def _start_nginx(self, ports: list[int]) -> str:
        port = free_port()
        prefix = self.workdir / f"nginx-{port}"
        (prefix / "logs").mkdir(parents=True)
        upstreams = "".join(f"server 127.0.0.1:{p};" for p in ports)
        (prefix / "nginx.conf").write_text(
            "worker_processes 1; daemon off; error_log logs/error.log warn; pid logs/nginx.pid;\n"
            "events { worker_connections 8192; }\n"
            f"http {{ access_log off; upstream registry {{ {upstreams} keepalive 256; }}\n"
            f"server {{ listen 127.0.0.1:{port} backlog=4096; client_max_body_size 2m;\n"
            "location / { proxy_pass http://registry; proxy_http_version 1.1;\n"
            "proxy_set_header Connection \"\"; proxy_set_header Host $host; } } }\n")
        self.nginx = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        _wait_up(url, self.procs + [self.nginx])
        return url

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    @property
    def proxy_pids(self) -> list[int]:
        # nginx's master forks one worker: count the worker (the master idles).
        if not self.nginx:
            return []
        kids = Path(f"/proc/{self.nginx.pid}/task/{self.nginx.pid}/children").read_text().split()
        return [self.nginx.pid, *map(int, kids)]

    def __exit__(self, *exc):
        for proc in ([self.nginx] if self.nginx else []) + self.procs:
            proc.terminate()
        for proc in ([self.nginx] if self.nginx else []) + self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_up(url: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a bench server process exited at start (set BENCH_SERVER_LOG=FILE to see why)")
        try:
            httpx.get(url + "/api/v1/time", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def run_load(servers: Servers, tokens: list[str], workdir: Path, *, rate: float | None, seconds: float,
             events: str, start: dict[str, int], concurrency: int = 0, connections: int = 512,
             passes: int = 0) -> dict:
    """One load-generator process against `servers`; server CPU is sampled at its go/done lines."""
    prefix = "s" + uuid.uuid4().hex[:8]
    job = {"urls": servers.urls, "tokens": tokens, "rate": rate, "seconds": seconds, "events": events,
           "concurrency": concurrency, "connections": connections, "prefix": prefix, "timeout_s": 15,
           "passes": passes, "start": start}
    jobfile = workdir / f"{prefix}.json"
    jobfile.write_text(json.dumps(job))
    gen = subprocess.Popen([sys.executable, "-m", "bench.fleet", "--loadgen", str(jobfile)], cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    assert gen.stdout.readline().strip() == "go", "the load generator did not start"
    cpu0, proxy0, gen0 = cpu_seconds(servers.pids), cpu_seconds(servers.proxy_pids), cpu_seconds([gen.pid])
    machine0 = machine_ticks()
    line = gen.stdout.readline().strip()
    assert line == "done", f"the load generator failed ({line!r})"
    cpu1, proxy1, gen1 = cpu_seconds(servers.pids), cpu_seconds(servers.proxy_pids), cpu_seconds([gen.pid])
    machine1 = machine_ticks()
    out = json.loads(gen.stdout.read())
    if gen.wait() != 0:
        raise RuntimeError("the load generator failed")
    lat = sorted(out["latencies"]) or [float("nan")]
    served = len(out["latencies"])
    return {
        "prefix": prefix, "ok": out["ok"], "served": served, "errors": out["errors"], "acked": out["acked"],
        "skipped_busy": out["skipped_busy"], "rps": out["ok"] / out["elapsed"],
        "p50": statistics.median(lat), "p99": lat[max(0, int(len(lat) * 0.99) - 1)],
        "cpu_ms": (cpu1 - cpu0) * 1000 / max(served, 1), "server_cpu_s": cpu1 - cpu0,
        "proxy_cpu_ms": (proxy1 - proxy0) * 1000 / max(served, 1), "loadgen_cpu_s": gen1 - gen0,
        "elapsed": out["elapsed"],
        # Share of all cores busy during the run (everyone's work, not only ours).
        "machine_busy": (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1]),
    }


# --- the run ---------------------------------------------------------------------------------


def enrol(db_url: str, gates: int) -> list[str]:
    """G gates on 40 community sites, enrolled the way `registry gate add` does it."""
    from sync.server import auth, open_database
    from sync.server.schema import migrate

    db = open_database(db_url)
    migrate(db)
    tokens = [auth.add_gate(db, f"site-{i % 40}", f"g-{i}")[1] for i in range(gates)]
    db.dispose()
    return tokens


def count_on_server(db_url: str, acked: dict[str, int]) -> tuple[int, int, int]:
    """(acknowledged events, lost, duplicated) by (stream, seq) in the events table."""
    from sqlalchemy import func, select

    from sync.server import open_database
    from sync.server.schema import events

    db = open_database(db_url)
    with db.read() as conn:
        rows = conn.execute(select(events.c.stream_id, func.count(), func.count(func.distinct(events.c.seq)),
                                   func.max(events.c.seq)).group_by(events.c.stream_id)).all()
    db.dispose()
    stored = {r[0]: r for r in rows}
    lost = dup = 0
    for stream, through in acked.items():
        _, count, distinct, top = stored.get(stream, (stream, 0, 0, 0))
        dup += count - distinct
        lost += max(0, through - distinct)  # seqs 1..through were acknowledged; each must be there once
    return sum(acked.values()), lost, dup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    parser.add_argument("--gates", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measured run")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--anchor-rate", type=float, default=100.0,
                        help="requests/s of the anchor runs (below the baseline's capacity)")
    parser.add_argument("--full", action="store_true", help="3,000 gates, 30 s runs")
    parser.add_argument("--pg", default=os.environ.get("CHECKPOINT_TEST_PG", "postgresql://postgres@127.0.0.1/test"))
    args = parser.parse_args()
    if args.loadgen:
        result = asyncio.run(_loadgen(json.loads(Path(args.loadgen).read_text())))
        print(json.dumps(result))
        return 0
    if args.full:
        args.gates, args.seconds = max(args.gates, 3000), max(args.seconds, 30)
    counts = [int(x) for x in args.processes.split(",")]
    load = os.getloadavg()
    print(f"fleet: {args.gates} gates, {args.seconds:g} s runs, {os.cpu_count()} cores on this machine "
          f"(load average {load[0]:.1f} at start: shared with other work)")
    db_url, drop = pg_schema(args.pg)
    misses: list[str] = []
    acked: dict[str, int] = {}
    try:
        tokens = enrol(db_url, args.gates)
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            def load(servers: Servers, **kw) -> dict:
                result = run_load(servers, tokens, workdir, start=dict(acked), **kw)
                for stream, through in result["acked"].items():
                    acked[stream] = max(acked.get(stream, 0), through)
                return result

            def warm(servers: Servers) -> None:
                # Steady state, as in a running district: every gate has its
                # stream and has called each process (the token cache) -
                # P passes over the gates for P processes behind round robin.
                load(servers, rate=None, seconds=0, events="2", concurrency=32, passes=servers.count)

            anchor = {}
            for mode in ("baseline", "baseline-code", "now"):
                with Servers(db_url, 1, workdir, mode=mode) as servers:
                    warm(servers)
                    anchor[mode] = load(servers, rate=args.anchor_rate, seconds=args.seconds, events="2")
            ratio = anchor["now"]["cpu_ms"] / anchor["baseline"]["cpu_ms"]
            ok = ratio <= CPU_RATIO_TARGET
            print(f"\nserver CPU per 2-event request at {args.anchor_rate:g} req/s, one process:")
            code_ratio = anchor["now"]["cpu_ms"] / anchor["baseline-code"]["cpu_ms"]
            print(f"  anchor: the old path (h11, asyncio loop, CHECKPOINT_UPLOAD_BASELINE=1) "
                  f"{anchor['baseline']['cpu_ms']:6.2f} ms")
            print(f"  the old code on httptools/uvloop (not the anchor)                     "
                  f"{anchor['baseline-code']['cpu_ms']:6.2f} ms")
            print(f"  now                                                                    "
                  f"{anchor['now']['cpu_ms']:6.2f} ms")
            print(f"  ratio {ratio:.2f} (target <= {CPU_RATIO_TARGET:.2f}: {'meets' if ok else 'MISS'}); "
                  f"the code changes alone {code_ratio:.2f}")
            if not ok:
                misses.append(f"CPU per request ratio {ratio:.2f} > {CPU_RATIO_TARGET:.2f}")

            print(f"\n{'procs':>5} {'proxy':<18} {'capacity':>9} {'load':>5} {'req/s':>7} {'p50 ms':>7} "
                  f"{'p99 ms':>7} {'CPU ms/req':>10} {'proxy ms':>8} {'errors':<12}")
            capacities: list[tuple[int, float, float]] = []
            for count in counts:
                with Servers(db_url, count, workdir) as servers:
                    warm(servers)
                    cap = load(servers, rate=None, seconds=args.seconds, events="1-2", concurrency=64)
                    capacities.append((count, cap["rps"], cap["machine_busy"]))
                    proxy = "nginx" if servers.nginx else ("direct" if count == 1 else "client spread")
                    for share in (0.5, 0.8):
                        r = load(servers, rate=cap["rps"] * share, seconds=args.seconds, events="1-2")
                        errors = ",".join(f"{k}:{v}" for k, v in r["errors"].items()) or "0"
                        print(f"{count:>5} {proxy:<18} {cap['rps']:>9.0f} {share:>5.0%} {r['rps']:>7.0f} "
                              f"{r['p50'] * 1000:>7.0f} {r['p99'] * 1000:>7.0f} {r['cpu_ms']:>10.2f} "
                              f"{r['proxy_cpu_ms']:>8.2f} {errors:<12}")
                        if share == 0.8 and not r["p99"] < P99_TARGET_S:
                            misses.append(f"p99 {r['p99'] * 1000:.0f} ms at 80% of capacity with {count} process(es)")
            # Capacity grows with processes while cores are free; once every
            # core is busy (servers, PostgreSQL, nginx, the generator and the
            # other work on this machine) it can only hold. A miss: no growth
            # although the previous run left cores idle, or a collapse.
            best = 0.0
            for (count0, rps0, busy0), (count1, rps1, _busy1) in zip(capacities, capacities[1:]):
                best = max(best, rps0)
                if busy0 < FREE_CORES_BUSY and rps1 < 1.1 * rps0:
                    misses.append(f"capacity did not grow from {count0} to {count1} processes "
                                  f"({rps0:.0f} -> {rps1:.0f} req/s) with the cores {busy0:.0%} busy")
                if rps1 < COLLAPSE * best:
                    misses.append(f"capacity fell to {rps1:.0f} req/s with {count1} processes (best {best:.0f})")
            if len(capacities) > 1:
                growth = ", ".join(f"{c}: {r / capacities[0][1]:.2f}x (cores {b:.0%} busy)" for c, r, b in capacities)
                print(f"capacity relative to one process: {growth}; {os.cpu_count()} cores shared by servers, "
                      f"PostgreSQL, nginx, the load generator and other work")
        total, lost, dup = count_on_server(db_url, acked)
        print(f"\nexactly once: {total} acknowledged events, {lost} lost, {dup} duplicated (by stream, seq on the server)")
        if lost or dup:
            misses.append(f"{lost} lost, {dup} duplicated")
    finally:
        drop()
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.1f}")
    if misses:
        print("MISS: " + "; ".join(misses))
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
