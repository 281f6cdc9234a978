"""Median round trip of a `shell` call running `true`, execgate next to Codex's server.

Both servers are driven by the same client (the official MCP Python SDK) in the same run:
initialize, one warm-up call, then N sequential calls; each call is timed from the client
(send to parsed result). Prints both medians and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sandbox_state import update_sandbox_state  # noqa: E402


async def measure(
    name: str, params: StdioServerParameters, sandbox: dict | None, calls: int, workdir: str
) -> dict:
    samples: list[float] = []
    with open(os.devnull, "w") as devnull:
        async with stdio_client(params, errlog=devnull) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                if sandbox is not None:
                    await update_sandbox_state(session, sandbox, workdir)
                warm = await session.call_tool("shell", {"command": "true", "workdir": workdir})
                if warm.is_error:
                    raise SystemExit(f"{name}: warm-up call failed: {warm.content}")
                for _ in range(calls):
                    start = time.perf_counter()
                    result = await session.call_tool(
                        "shell", {"command": "true", "workdir": workdir}
                    )
                    samples.append(time.perf_counter() - start)
                    if result.is_error:
                        raise SystemExit(f"{name}: call failed: {result.content}")
    samples.sort()
    return {
        "server": name,
        "calls": calls,
        "median_ms": statistics.median(samples) * 1000,
        "p10_ms": samples[len(samples) // 10] * 1000,
        "p90_ms": samples[(len(samples) * 9) // 10] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--execgate", required=True, help="path to the execgate binary")
    parser.add_argument("--codex", help="path to codex-shell-tool-mcp's bin/mcp-server.js")
    parser.add_argument("--calls", type=int, default=200)
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

    async def run() -> list[dict]:
        return [await measure(name, p, sb, args.calls, workdir) for name, p, sb in servers]

    results = anyio.run(run)
    for r in results:
        if args.json:
            print(json.dumps(r))
        else:
            print(
                f"{r['server']:>42}: median {r['median_ms']:7.2f} ms "
                f"(p10 {r['p10_ms']:.2f}, p90 {r['p90_ms']:.2f}) over {r['calls']} calls"
            )
    if len(results) == 3:
        ratio = results[2]["median_ms"] / results[0]["median_ms"]
        print(f"ratio codex/execgate median: {ratio:.2f}x "
              f"({'execgate faster' if ratio >= 1 else 'execgate slower'})")


if __name__ == "__main__":
    sys.exit(main())
