"""End-to-end tests of `execgate mcp` with the official MCP Python SDK as the client.

The server is the built binary (EXECGATE_BIN, default target/debug/execgate), started by
the SDK's stdio transport exactly as an agent would start it. Run with
`tests/mcp/run` (creates the venv, builds, runs pytest).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench" / "mcp"))
from sandbox_state import update_sandbox_state  # noqa: E402,F401  (re-exported for tests)


def execgate_bin() -> Path:
    path = Path(os.environ.get("EXECGATE_BIN", REPO / "target" / "debug" / "execgate"))
    if not path.exists():
        pytest.fail(f"{path} does not exist: build it first (cargo build --bin execgate)")
    return path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


def write_rules(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "test.rules"
    path.write_text(text)
    return path


Elicit = Callable[[Any, types.ElicitRequestParams], Awaitable[types.ElicitResult]]


class Server:
    """One `execgate mcp` process: its unique tag finds it in /proc."""

    def __init__(
        self,
        tmp_path: Path,
        rules: Path | None,
        extra: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ):
        self.tag = f"execgate-test-{uuid.uuid4().hex}"
        self.audit = tmp_path / f"{self.tag}.audit.jsonl"
        args = ["mcp", "--no-default-rules", "--audit", str(self.audit)]
        if rules is not None:
            args += ["--rules", str(rules)]
        self.params = StdioServerParameters(command=str(execgate_bin()), args=args + extra, env=env, cwd=cwd)
        self.stderr_path = tmp_path / f"{self.tag}.stderr"

    def pids(self) -> list[int]:
        """The server and any helper process it started (e.g. the supervisor's watchdog)."""
        return pids_with(str(self.audit))

    def pid(self) -> int:
        """The server itself: the one started by this test process."""
        [pid] = [p for p in self.pids() if parent_of(p) == os.getpid()]
        return pid


def pids_with(needle: str) -> list[int]:
    """Live processes whose command line contains `needle` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z" and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def parent_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@asynccontextmanager
async def connect(
    tmp_path: Path,
    rules: Path | None = None,
    extra: list[str] | None = None,
    elicitation: Elicit | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> AsyncIterator[tuple[ClientSession, Server]]:
    """`cwd`: the server's working directory (by default this process's)."""
    server = Server(tmp_path, rules, extra or [], env, cwd)
    with open(server.stderr_path, "w") as errlog:
        async with stdio_client(server.params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, elicitation_callback=elicitation) as session:
                await session.initialize()
                yield session, server


async def shell(session: ClientSession, command: str, workdir: Path, **extra: Any) -> dict:
    """Calls `shell`; returns structuredContent after checking the text block beside it
    (the status, then the output, whole when short).

    `login` defaults to False here: a login shell runs the machine's profile, whose own
    execs (pyenv and the like) have nothing to do with the behaviour under test, and some
    of them wait for locks under $HOME, which a workspace-write sandbox keeps read-only.
    """
    extra.setdefault("login", False)
    result = await session.call_tool("shell", {"command": command, "workdir": str(workdir), **extra})
    assert not result.is_error, result.content
    structured = result.structured_content
    assert structured is not None
    [block] = result.content
    text = block.text  # type: ignore[union-attr]
    assert text.startswith(f"Exit code: {structured['exit_code']}\n"), text
    shown = structured.get("output") or structured["stdout"] or structured["stderr"]
    if len(shown.encode()) <= 16 * 1024:
        assert text.endswith("\nOutput:\n" + shown), (text, structured)
    if "output" in structured:
        assert structured["stdout"] and structured["stderr"], "output is only sent for both streams"
    return structured
