"""Median round trip of a `shell` call running `true`, execgate next to Codex's server.

Both servers are driven by the same client (the official MCP Python SDK) in the same run:
initialize, one warm-up call, then N sequential calls to each, interleaved; each call is
timed from the client (send to parsed and validated result). Prints the medians and the
ratio.

`--direct` adds the client running the command itself (no MCP, both pipes read to the end)
in the same rounds: the floor for a large output, e.g. 10 MB:
`--direct --command 'head -c 10000000 /dev/zero | tr "\\0" a'`.

`--pause MS` waits that long (untimed) before every call, as an agent thinks between
calls: costs that only show after the machine was idle (an RCU grace period in a cgroup
move, cold caches, a sleeping CPU woken) are then paid by every call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
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


async def open_session(
    stack: AsyncExitStack, params: StdioServerParameters, sandbox: dict | None, workdir: str
) -> ClientSession:
    devnull = stack.enter_context(open(os.devnull, "w"))
    read, write = await stack.enter_async_context(stdio_client(params, errlog=devnull))
    session = await stack.enter_async_context(ClientSession(read, write))
    await session.initialize()
    if sandbox is not None:
        await update_sandbox_state(session, sandbox, workdir)
    return session


async def run_directly(command: str, workdir: str, login: bool) -> None:
    """The client's own run of the command, no MCP: bash started with the same flag, both
    pipes read to their end (what a client pays to read the output itself)."""
    process = await anyio.open_process(
        ["bash", "-lc" if login else "-c", command], cwd=workdir, stdin=subprocess.DEVNULL
    )
    async with process:

        async def drain(stream) -> None:
            async for _ in stream:
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, process.stdout)
            tg.start_soon(drain, process.stderr)
        if await process.wait() != 0:
            raise SystemExit(f"{command!r} failed when run directly")


async def measure_all(
    servers: list, command: str, calls: int, workdir: str, login: bool, pause: float
) -> list[dict]:
    """Calls the servers in turn (a, b, c, a, b, c, ...) so that load from elsewhere on the
    machine weighs on all of them alike. A server whose parameters are `None` is the
    client running the command itself ([`run_directly`])."""
    call = {"command": command, "workdir": workdir, "login": login}
    async with AsyncExitStack() as stack:
        sessions = [
            None if p is None else await open_session(stack, p, sb, workdir)
            for _, p, sb in servers
        ]
        samples: list[list[float]] = [[] for _ in servers]
        for i in range(calls + 1):
            for j, session in enumerate(sessions):
                if pause:
                    await anyio.sleep(pause)
                start = time.perf_counter()
                if session is None:
                    await run_directly(command, workdir, login)
                else:
                    result = await session.call_tool("shell", call)
                    if result.is_error:
                        raise SystemExit(f"{servers[j][0]}: call failed: {result.content}")
                elapsed = time.perf_counter() - start
                if i > 0:  # the first call of each is a warm-up
                    samples[j].append(elapsed)
    out = []
    for (name, _, _), xs in zip(servers, samples):
        xs.sort()
        out.append({
            "server": name,
            "command": command,
            "calls": calls,
            "median_ms": statistics.median(xs) * 1000,
            "p10_ms": xs[len(xs) // 10] * 1000,
            "p90_ms": xs[(len(xs) * 9) // 10] * 1000,
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--execgate", required=True, help="path to the execgate binary")
    parser.add_argument("--codex", help="path to codex-shell-tool-mcp's bin/mcp-server.js")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument(
        "--command",
        action="append",
        help="command to time (repeatable); default: `true` (a bash builtin: no exec) and "
        "`/bin/true` (one exec, which each server intercepts and decides)",
    )
    parser.add_argument(
        "--login",
        action="store_true",
        help="bash -lc (the tools' default) instead of bash -c: adds the machine's login "
        "profile to every call, on both sides",
    )
    parser.add_argument(
        "--direct",
        action="store_true",
        help="also time the client running each command itself (bash, both pipes read to "
        "the end, no MCP): the floor a large output's call is compared with",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=0,
        metavar="MS",
        help="wait MS milliseconds before each call, untimed (an agent thinking between "
        "calls); default 0: back to back",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line per server")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="execgate-bench-")
    rules = Path(workdir) / "empty.rules"
    rules.write_text("")
    execgate = StdioServerParameters(
        command=args.execgate, args=["mcp", "--no-default-rules", "--rules", str(rules)]
    )
    # Codex's server cannot sandbox without Codex's own Linux helper, so the comparison is
    # made in danger-full-access on both sides (execs still go through each server's exec
    # interception); execgate's default workspace-write sandbox is measured too.
    full = {"type": "danger-full-access"}
    servers = [
        ("execgate (danger-full-access)", execgate, full),
        ("execgate (workspace-write)", execgate, {"type": "workspace-write"}),
    ]
    if args.codex:
        # Codex's server reads rules from CODEX_HOME; point it at an empty one.
        codex_home = Path(workdir) / "codex-home"
        (codex_home / "rules").mkdir(parents=True)
        servers.append(
            (
                "codex-shell-tool-mcp (danger-full-access)",
                StdioServerParameters(
                    command="node", args=[args.codex], env={"CODEX_HOME": str(codex_home)}
                ),
                full,
            )
        )

    if args.direct:
        servers.append(("the client itself (no MCP)", None, None))
    commands = args.command or ["true", "/bin/true"]
    for command in commands:
        results = anyio.run(
            measure_all, servers, command, args.calls, workdir, args.login, args.pause / 1000
        )
        shell = f"bash {'-lc' if args.login else '-c'} {command!r}"
        paused = f", {args.pause:g} ms apart" if args.pause else ""
        if not args.json:
            print(f"{shell}, {args.calls} sequential calls to each server{paused}, interleaved:")
        for r in results:
            if args.json:
                print(json.dumps(r))
            else:
                print(
                    f"  {r['server']:>42}: median {r['median_ms']:6.2f} ms "
                    f"(p10 {r['p10_ms']:.2f}, p90 {r['p90_ms']:.2f})"
                )
        if args.codex and not args.json:
            ratio = results[2]["median_ms"] / results[0]["median_ms"]
            verdict = "execgate faster" if ratio >= 1 else "execgate slower"
            print(f"  ratio codex/execgate (danger-full-access) median: {ratio:.2f}x ({verdict})")
        if args.direct and not args.json:
            ratio = results[0]["median_ms"] / results[-1]["median_ms"]
            print(f"  execgate (danger-full-access) / the client itself: {ratio:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
