"""Scale of one `execgate mcp` server (issue #18, target 5).

One server, driven by the official MCP Python SDK:
  1. a warm-up call, then the server's RSS and thread count;
  2. `--concurrent` (default 64) `shell` calls sent at once on one session: wall time for
     all, throughput, per-call p50/p99 latency;
  3. `--sequential` (default 1000) calls in a row: throughput, p50/p99, and RSS and threads
     sampled every 100 calls, so growth per call shows;
  4. RSS and threads again at the end (after the server's idle escalation and session
     threads have had their 500 ms to leave).

RSS and threads are read from /proc of the server process (the client's child named
`execgate`). Prints a table, or one JSON object with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sandbox_state import update_sandbox_state  # noqa: E402


def server_pid(binary: str) -> int:
    """The client's child process running `binary`."""
    me = os.getpid()
    name = os.path.basename(binary)[:15]
    for task in os.listdir(f"/proc/{me}/task"):
        children = Path(f"/proc/{me}/task/{task}/children").read_text().split()
        for child in children:
            try:
                comm = Path(f"/proc/{child}/comm").read_text().strip()
            except FileNotFoundError:
                continue
            if comm == name:
                return int(child)
    raise SystemExit(f"no child process named {name} found")


def usage(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


async def timed_call(session: ClientSession, call: dict) -> float:
    start = time.perf_counter()
    result = await session.call_tool("shell", call)
    elapsed = time.perf_counter() - start
    if result.is_error:
        raise SystemExit(f"call failed: {result.content}")
    structured = result.structured_content or {}
    if structured.get("exit_code") != 0:
        raise SystemExit(f"command failed: {structured}")
    return elapsed


def summary(latencies: list[float], wall: float) -> dict:
    return {
        "calls": len(latencies),
        "wall_s": wall,
        "calls_per_s": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


async def run(args: argparse.Namespace) -> dict:
    workdir = tempfile.mkdtemp(prefix="execgate-scale-")
    rules = Path(workdir) / "empty.rules"
    rules.write_text("")
    params = StdioServerParameters(
        command=args.execgate, args=["mcp", "--no-default-rules", "--rules", str(rules)]
    )
    call = {"command": args.command, "workdir": workdir, "login": False}
    out: dict = {"sandbox": args.sandbox, "command": args.command}
    async with AsyncExitStack() as stack:
        devnull = stack.enter_context(open(os.devnull, "w"))
        read, write = await stack.enter_async_context(stdio_client(params, errlog=devnull))
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        await update_sandbox_state(session, {"type": args.sandbox}, workdir)
        pid = server_pid(args.execgate)
        await timed_call(session, call)
        await anyio.sleep(1)
        out["start"] = usage(pid)

        latencies: list[float] = []

        async def one() -> None:
            latencies.append(await timed_call(session, call))

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(args.concurrent):
                tg.start_soon(one)
        wall = time.perf_counter() - start
        out["concurrent"] = {**summary(latencies, wall), "after": usage(pid)}

        latencies = []
        samples = []
        start = time.perf_counter()
        for i in range(args.sequential):
            latencies.append(await timed_call(session, call))
            if (i + 1) % 100 == 0:
                samples.append({"calls": i + 1, **usage(pid)})
        wall = time.perf_counter() - start
        out["sequential"] = {**summary(latencies, wall), "samples": samples}
        await anyio.sleep(1)
        out["end"] = usage(pid)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--execgate", required=True, help="path to the execgate binary")
    parser.add_argument("--concurrent", type=int, default=64)
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--command", default="/bin/true")
    parser.add_argument("--sandbox", default="workspace-write")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    r = anyio.run(run, args)
    if args.json:
        print(json.dumps(r))
        return
    s, c, q, e = r["start"], r["concurrent"], r["sequential"], r["end"]
    print(f"one execgate mcp server, {r['sandbox']}, `{r['command']}` per call:")
    print(
        f"  {c['calls']} concurrent calls: {c['wall_s'] * 1000:.0f} ms for all, "
        f"{c['calls_per_s']:.0f} calls/s, p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms"
    )
    print(
        f"  {q['calls']} calls in a row: {q['calls_per_s']:.0f} calls/s, "
        f"p50 {q['p50_ms']:.1f} ms, p99 {q['p99_ms']:.1f} ms"
    )
    print("  server RSS / threads / fds:")
    print(f"    after warm-up        {s['rss_kib'] / 1024:6.1f} MiB {s['threads']:3d} {s['fds']:3d}")
    a = c["after"]
    print(f"    after the burst      {a['rss_kib'] / 1024:6.1f} MiB {a['threads']:3d} {a['fds']:3d}")
    for sample in q["samples"][:: max(1, len(q["samples"]) // 5)]:
        print(
            f"    after {sample['calls']:5d} in a row {sample['rss_kib'] / 1024:6.1f} MiB "
            f"{sample['threads']:3d} {sample['fds']:3d}"
        )
    print(f"    1 s after the last   {e['rss_kib'] / 1024:6.1f} MiB {e['threads']:3d} {e['fds']:3d}")


if __name__ == "__main__":
    sys.exit(main())
