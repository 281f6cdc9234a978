"""`execgate mcp` end to end: a real MCP client, the real binary, real bash."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import types
from mcp.shared.exceptions import MCPError

from conftest import (
    REPO,
    connect,
    execgate_bin,
    kill_all,
    pids_with,
    shell,
    update_sandbox_state,
    wait_until,
    write_rules,
)

pytestmark = pytest.mark.anyio

GIT_INIT_PROMPT = 'prefix_rule(pattern=["git", "init"], decision="prompt", justification="creates a repository")\n'


class Elicitations:
    """Records elicitation requests and answers them with `action`, after `delay` s."""

    def __init__(self, action: str, content: dict | None = None, delay: float = 0.0):
        self.action = action
        self.content = content
        self.delay = delay
        self.messages: list[str] = []

    async def __call__(self, context, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.messages.append(params.message)
        if self.delay:
            await anyio.sleep(self.delay)
        return types.ElicitResult(action=self.action, content=self.content)


async def test_list_tools_exactly_one_shell_tool_with_codex_schema(tmp_path):
    async with connect(tmp_path) as (session, _):
        tools = (await session.list_tools()).tools
    assert [t.name for t in tools] == ["shell"]
    tool = tools[0]
    assert tool.description.startswith("Runs a shell command and returns its output.")
    schema = tool.input_schema
    assert sorted(schema["required"]) == ["command", "workdir"]
    assert sorted(schema["properties"]) == ["command", "login", "timeout_ms", "workdir"]
    assert schema["properties"]["command"]["type"] == "string"
    out = tool.output_schema
    for field in ["exit_code", "stdout", "stderr", "output", "duration_ms", "timed_out", "sandbox", "execs"]:
        assert field in out["properties"], field


async def test_result_is_structured_and_a_nonzero_exit_is_not_an_error(tmp_path, workdir):
    async with connect(tmp_path) as (session, _):
        r = await shell(session, "echo out; echo err >&2; exit 3", workdir, login=False)
    assert r["exit_code"] == 3
    assert r["stdout"] == "out\n"
    assert r["stderr"] == "err\n"
    assert sorted(r["output"].splitlines()) == ["err", "out"]
    assert r["timed_out"] is False
    assert r["sandbox"]["source"] == "command-line"
    assert r["streams"]["stdout"] == {"total_bytes": 4, "cut_bytes": 0, "lossy": False, "budget_cut_bytes": 0}
    assert r["warnings"] == []


async def test_workdir_and_login_shell(tmp_path, workdir):
    # A fresh $HOME: the machine's own ~/.profile (pyenv and the like) is not under test, and
    # its execs could be denied half-way and leave state behind (pyenv's rehash lock).
    home = tmp_path / "home"
    home.mkdir()
    async with connect(tmp_path, env={"HOME": str(home)}) as (session, _):
        r = await shell(session, "pwd; shopt -q login_shell && echo login || echo plain", workdir, login=True)
        assert r["stdout"].endswith(f"{workdir}\nlogin\n"), r
        result = await session.call_tool(
            "shell", {"command": "shopt -q login_shell && echo login || echo plain", "workdir": str(workdir)}
        )
        assert result.structured_content["stdout"].endswith("login\n"), "login must default to true"
        r = await shell(session, "shopt -q login_shell && echo login || echo plain", workdir, login=False)
        assert r["stdout"] == "plain\n"


async def test_accept_elicitation_for_prompt_rule(tmp_path, workdir):
    rules = write_rules(tmp_path, GIT_INIT_PROMPT)
    answers = Elicitations("accept", {"decision": "approve"})
    async with connect(tmp_path, rules, elicitation=answers) as (session, _):
        await update_sandbox_state(session, {"type": "read-only"}, str(workdir))
        r = await shell(session, "git init .", workdir)
    assert len(answers.messages) == 1, answers.messages
    message = answers.messages[0]
    assert message.startswith("Allow agent to run `"), message
    assert "git init .` in `" + str(workdir) + "`?" in message, message
    assert "creates a repository" in message
    assert r["exit_code"] == 0, r
    assert r["sandbox"]["mode"] == "read-only"
    assert r["sandbox"]["source"] == "sandbox-state-update"
    # It ran outside the read-only sandbox: the repository exists.
    assert (workdir / ".git").is_dir()
    escalated = [e for e in r["execs"] if e["ran_in"] == "escalated"]
    assert escalated and escalated[0]["asked_human"], r["execs"]


async def test_decline_elicitation_denies_and_says_why(tmp_path, workdir):
    rules = write_rules(tmp_path, GIT_INIT_PROMPT)
    answers = Elicitations("decline")
    async with connect(tmp_path, rules, elicitation=answers) as (session, _):
        await update_sandbox_state(session, {"type": "read-only"}, str(workdir))
        r = await shell(session, "git init .", workdir)
    assert len(answers.messages) == 1
    assert r["exit_code"] != 0
    assert not (workdir / ".git").exists()
    denied = [e for e in r["execs"] if e["ran_in"] == "denied"]
    assert denied, r
    assert "declined" in denied[0]["reason"], denied


async def test_prompt_without_elicitation_support_is_denied_without_hanging(tmp_path, workdir):
    rules = write_rules(tmp_path, GIT_INIT_PROMPT)
    async with connect(tmp_path, rules) as (session, _):
        start = time.monotonic()
        r = await shell(session, "git init .", workdir)
    assert time.monotonic() - start < 10
    assert r["exit_code"] != 0
    assert not (workdir / ".git").exists()
    reasons = " ".join(e["reason"] for e in r["execs"])
    assert "does not support elicitation" in reasons, r


async def test_forbidden_rule(tmp_path, workdir):
    rules = write_rules(
        tmp_path,
        'prefix_rule(pattern=["touch"], decision="forbidden", justification="no touching here")\n',
    )
    async with connect(tmp_path, rules) as (session, _):
        r = await shell(session, "touch marker", workdir)
    assert r["exit_code"] != 0
    assert not (workdir / "marker").exists()
    denied = [e for e in r["execs"] if e["ran_in"] == "denied"]
    assert denied and denied[0]["decision"] == "forbidden", r
    assert "no touching here" in json.dumps(denied[0]) or "touch" in denied[0]["reason"]


async def test_late_elicitation_answer_keeps_the_full_timeout(tmp_path, workdir):
    rules = write_rules(tmp_path, GIT_INIT_PROMPT)
    # The human answers after 3 s; the command's own budget is 1.5 s and it needs ~0.5 s.
    answers = Elicitations("accept", {"decision": "approve"}, delay=3.0)
    async with connect(tmp_path, rules, elicitation=answers) as (session, _):
        r = await shell(session, "git init . && sleep 0.5 && echo done", workdir, timeout_ms=1500)
    assert r["timed_out"] is False, r
    assert r["exit_code"] == 0, r
    assert r["stdout"].endswith("done\n")
    assert r["duration_ms"] >= 3000


async def test_timeout_kills_the_tree(tmp_path, workdir):
    async with connect(tmp_path) as (session, _):
        start = time.monotonic()
        r = await shell(session, "sleep 4242.25 & sleep 4242.5", workdir, timeout_ms=500)
        elapsed = time.monotonic() - start
    assert r["timed_out"] is True
    assert r["exit_code"] != 0
    assert elapsed < 5
    assert wait_until(lambda: not pids_with("4242.25") and not pids_with("4242.5"), 5)


async def test_output_flood_is_capped_and_memory_bounded(tmp_path, workdir):
    total = 200 * 1024 * 1024
    async with connect(tmp_path) as (session, server):
        pid = server.pid()
        start = time.monotonic()
        r = await shell(session, f"yes | head -c {total}", workdir, timeout_ms=120_000)
        elapsed = time.monotonic() - start
        status = Path(f"/proc/{pid}/status").read_text()
    peak_kib = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    assert r["exit_code"] == 0, r["stderr"]
    assert r["streams"]["stdout"]["total_bytes"] == total
    assert r["streams"]["stdout"]["cut_bytes"] > total - 2 * 1024 * 1024
    assert len(r["stdout"].encode()) < 1024 * 1024 + 512
    assert "bytes cut here" in r["stdout"]
    assert r["stdout"].startswith("y\ny\n") and r["stdout"].endswith("y\ny\n")
    assert peak_kib < 100 * 1024, f"server peak RSS {peak_kib} KiB"
    assert elapsed < 60, elapsed


async def test_max_output_bytes_flag(tmp_path, workdir):
    async with connect(tmp_path, extra=["--max-output-bytes", "1000"]) as (session, _):
        r = await shell(session, "seq 1 100000", workdir)
    assert r["streams"]["stdout"]["cut_bytes"] > 0
    assert r["stdout"].startswith("1\n2\n3\n")
    assert r["stdout"].endswith("99999\n100000\n")


async def test_invalid_utf8_is_replaced_and_reported(tmp_path, workdir):
    async with connect(tmp_path) as (session, _):
        r = await shell(session, r"printf 'a\377b\000c'", workdir)
    assert r["stdout"] == "a\ufffdb\x00c"
    assert r["streams"]["stdout"]["lossy"] is True


async def test_eight_concurrent_calls_are_independent(tmp_path, workdir):
    async with connect(tmp_path) as (session, _):
        results: dict[int, dict] = {}

        async def one(i: int) -> None:
            results[i] = await shell(session, f"sleep 1; echo {i}; exit {i}", workdir, login=False)

        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(one, i)
        elapsed = time.monotonic() - start
    for i in range(8):
        assert results[i]["stdout"] == f"{i}\n"
        assert results[i]["exit_code"] == i
    # Sequential would take 8 s.
    assert elapsed < 5, elapsed


async def test_bad_requests_get_precise_errors_and_the_server_keeps_serving(tmp_path, workdir):
    async def error_of(name: str, arguments: dict) -> MCPError:
        with pytest.raises(MCPError) as info:
            await session.call_tool(name, arguments)
        return info.value

    async with connect(tmp_path) as (session, _):
        e = await error_of("bash", {"command": "true", "workdir": str(workdir)})
        assert e.code == -32602 and "unknown tool `bash`" in e.error.message
        e = await error_of("shell", {"command": "true"})
        assert e.code == -32602 and "missing field `workdir`" in e.error.message
        e = await error_of("shell", {"command": "true", "workdir": "relative"})
        assert e.code == -32602 and "absolute path" in e.error.message
        e = await error_of("shell", {"command": "true", "workdir": str(workdir / "nope")})
        assert e.code == -32602 and "cannot be used" in e.error.message
        e = await error_of("shell", {"command": "x" * (10 * 1024 * 1024), "workdir": str(workdir)})
        assert e.code == -32602 and "`command` is 10485760 bytes" in e.error.message
        r = await shell(session, "echo still here", workdir)
        assert r["stdout"] == "still here\n"


def test_non_object_arguments_get_an_error_with_the_request_id(tmp_path, workdir):
    """The SDK refuses to send such a request, so this one speaks raw JSON-RPC lines."""
    proc = subprocess.Popen(
        [str(execgate_bin()), "mcp", "--no-default-rules"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        def send(obj: dict) -> None:
            proc.stdin.write((json.dumps(obj) + "\n").encode())
            proc.stdin.flush()

        def answer() -> dict:
            return json.loads(proc.stdout.readline())

        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}})
        assert answer()["id"] == 1
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": "shell", "arguments": "ls -la"}})
        reply = answer()
        assert reply["id"] == 2
        assert reply["error"]["code"] == -32602
        assert "`arguments` must be an object, got a string" in reply["error"]["message"]
        send({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
              "params": {"name": "shell", "arguments": {"command": "echo ok", "workdir": str(workdir), "login": False}}})
        reply = answer()
        assert reply["id"] == 3 and reply["result"]["structuredContent"]["stdout"] == "ok\n"
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


async def test_malformed_sandbox_state_falls_back_with_a_warning(tmp_path, workdir):
    async with connect(tmp_path) as (session, _):
        await update_sandbox_state(session, {"type": "sometimes"})
        r = await shell(session, "true", workdir)
    assert r["sandbox"]["source"] == "command-line"
    assert "unknown variant `sometimes`" in " ".join(r["warnings"]), r


async def test_sandbox_state_from_tool_call_meta(tmp_path, workdir):
    async with connect(tmp_path) as (session, _):
        result = await session.call_tool(
            "shell",
            {"command": "touch in-workdir", "workdir": str(workdir), "login": False},
            meta={"codex/sandbox-state-meta": {
                "sandboxPolicy": {"type": "read-only"}, "sandboxCwd": str(workdir)}},
        )
    r = result.structured_content
    assert r["sandbox"]["mode"] == "read-only"
    assert r["sandbox"]["source"] == "tool-call-meta"


CLIENT_THAT_HANGS = """
import sys, anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
async def main():
    params = StdioServerParameters(command=sys.argv[1], args=["mcp", "--no-default-rules", "--audit", sys.argv[2]])
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            await s.call_tool("shell", {"command": "sleep 4343.5 & sleep 4343.25", "workdir": sys.argv[3], "login": False})
anyio.run(main)
"""


def test_client_killed_mid_call_leaves_no_process_behind(tmp_path, workdir):
    audit = tmp_path / "hang.audit"
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT_THAT_HANGS, str(execgate_bin()), str(audit), str(workdir)],
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: len(pids_with("4343.")) >= 2, 20), "the call never started"
        assert pids_with(str(audit)), "no server process"
        client.send_signal(signal.SIGKILL)
        client.wait()
        assert wait_until(lambda: not pids_with("4343."), 10), pids_with("4343.")
        assert wait_until(lambda: not pids_with(str(audit)), 10), "the server did not exit"
    finally:
        client.kill()
        kill_all(pids_with("4343.") + pids_with(str(audit)))


def patched_bash() -> Path | None:
    """The patched bash from patches-fallback/build-shells, as the Rust tests find it."""
    shells = Path(os.environ.get("EXECGATE_PATCHED_SHELLS", REPO / ".cache" / "patched-shells"))
    bash = shells / "bin" / "bash"
    if bash.is_file():
        return bash
    why = f"no patched bash at {bash}: run patches-fallback/build-shells first"
    if os.environ.get("EXECGATE_REQUIRE_PATCHED_SHELLS") == "1":
        pytest.fail(f"{why} (EXECGATE_REQUIRE_PATCHED_SHELLS=1)")
    pytest.skip(why)


async def test_wrapper_backend_decides_escalates_and_denies(tmp_path, workdir):
    """`execgate mcp --backend wrapper`: the same tool, decided through the patched bash."""
    bash = patched_bash()
    wrapper = execgate_bin().with_name("execgate-execve-wrapper")
    if not wrapper.is_file():
        pytest.fail(f"{wrapper} does not exist: cargo build -p execgate-execve-wrapper")
    rules = write_rules(
        tmp_path,
        'prefix_rule(pattern=["touch"], decision="forbidden", justification="no touching here")\n'
        'prefix_rule(pattern=["sh"], decision="allow")\n',
    )
    extra = ["--backend", "wrapper", "--patched-bash", str(bash)]
    env = {"EXECGATE_EXECVE_WRAPPER": str(wrapper)}
    async with connect(tmp_path, rules, extra=extra, env=env) as (session, _):
        r = await shell(
            session,
            "echo hi | cat; sh -c 'exit 42'; echo \"sh=$?\"; touch marker; echo \"touch=$?\"",
            workdir,
        )
    assert r["exit_code"] == 0, r
    assert r["stdout"] == "hi\nsh=42\ntouch=126\n", r
    assert not (workdir / "marker").exists()
    by_ran_in = {e["ran_in"]: e for e in r["execs"]}
    assert by_ran_in["escalated"]["argv"][0] == "sh", r
    assert by_ran_in["escalated"]["decision"] == "allow", r
    assert by_ran_in["denied"]["decision"] == "forbidden", r
    assert "no touching here" in r["stderr"], r


async def test_a_call_sees_only_its_own_processes_where_the_pid_namespace_is_available(tmp_path, workdir):
    doctor = json.loads(subprocess.run([str(execgate_bin()), "doctor", "--json"], capture_output=True, check=True).stdout)
    available = doctor["pid_namespace"]["available"]
    # A process of the same user outside the server, with a secret in its environment.
    outside = subprocess.Popen(["sleep", "60"], env={**os.environ, "EXECGATE_MCP_OUTSIDE_SECRET": "x"})
    try:
        async with connect(tmp_path) as (session, _):
            r = await shell(
                session,
                "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c '^EXECGATE_MCP_OUTSIDE_SECRET='",
                workdir,
                login=False,
            )
    finally:
        outside.kill()
        outside.wait()
    assert r["sandbox"]["pid_namespace"] is available
    if available:
        assert r["stdout"] == "0\n", r
    else:
        pytest.skip(f"no PID namespace here: {doctor['pid_namespace']['detail']}")


async def test_resource_limits_from_the_command_line_bind_every_call(tmp_path, workdir):
    async with connect(tmp_path, extra=["--limit", "nofile=64"]) as (session, _):
        r = await shell(session, "ulimit -n", workdir, login=False)
    assert r["stdout"] == "64\n", r
