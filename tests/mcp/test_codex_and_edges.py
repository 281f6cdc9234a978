"""Issue 16: what current Codex sends, results that fit every client, JSON-RPC edges.

Real binary, real bash, real sandbox: sandbox claims are checked by their effect on a
file outside every writable root.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from mcp import types

from conftest import connect, execgate_bin, shell, update_sandbox_state, write_rules

pytestmark = pytest.mark.anyio

META = "codex/sandbox-state-meta"
ROOT_READ = {"path": {"type": "special", "value": {"kind": "root"}}, "access": "read"}
CWD_WRITE = {"path": {"type": "special", "value": {"kind": "current_working_directory"}}, "access": "write"}


def managed(*entries: dict, network: str = "restricted") -> dict:
    return {"type": "managed", "file_system": {"type": "restricted", "entries": list(entries)}, "network": network}


@pytest.fixture
def outside() -> Path:
    """A fresh directory outside /tmp (writable under workspace-write) and every root."""
    d = Path("/var/lib") / f"execgate-canary-{uuid.uuid4().hex}"
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def call_with_meta(session, command: str, workdir: Path, state: dict) -> dict:
    """A `shell` call carrying the sandbox state as Codex 0.171 sends it."""
    result = await session.call_tool(
        "shell",
        {"command": command, "workdir": str(workdir), "login": False},
        meta={META: {**state, "codexLinuxSandboxExe": None, "useLegacyLandlock": False}},
    )
    assert not result.is_error, result.content
    return result.structured_content


async def test_codex_permission_profiles_choose_the_sandbox(tmp_path, workdir, outside):
    """Codex 0.171 sends `permissionProfile` and a file:// sandboxCwd, and never an update."""
    cwd = workdir.as_uri()
    async with connect(tmp_path, cwd=tmp_path) as (session, _):
        # danger-full-access: writes anywhere.
        r = await call_with_meta(session, f"touch {outside}/full", workdir,
                                 {"permissionProfile": {"type": "disabled"}, "sandboxCwd": cwd})
        assert r["exit_code"] == 0, r
        assert (r["sandbox"]["mode"], r["sandbox"]["source"], r["warnings"]) == ("danger-full-access", "tool-call-meta", [])
        assert (outside / "full").exists()
        # read-only: nothing written, not even the workspace.
        r = await call_with_meta(session, f"touch {outside}/ro {workdir}/ro", workdir,
                                 {"permissionProfile": managed(ROOT_READ), "sandboxCwd": cwd})
        assert r["exit_code"] != 0 and r["sandbox"]["mode"] == "read-only", r
        assert not (outside / "ro").exists() and not (workdir / "ro").exists()
        # workspace-write: the workspace (sandboxCwd) only.
        r = await call_with_meta(session, f"touch {workdir}/ww; touch {outside}/ww", workdir,
                                 {"permissionProfile": managed(ROOT_READ, CWD_WRITE), "sandboxCwd": cwd})
        assert r["sandbox"]["mode"] == "workspace-write", r
        assert (workdir / "ww").exists()
        assert not (outside / "ww").exists(), r
        assert r["exit_code"] != 0


async def test_an_unknown_sandbox_state_falls_back_to_the_servers_sandbox_with_a_warning(tmp_path, workdir, outside):
    async with connect(tmp_path, extra=["--sandbox", "read-only"]) as (session, _):
        r = await call_with_meta(session, f"touch {outside}/x", workdir,
                                 {"permissionProfile": {"type": "teleport"}, "sandboxCwd": workdir.as_uri()})
        assert r["sandbox"]["mode"] == "read-only" and r["sandbox"]["source"] == "command-line", r
        assert "using the server's own sandbox" in " ".join(r["warnings"]), r
        assert not (outside / "x").exists()
        # The update request is never refused either; later calls say what happened.
        await update_sandbox_state(session, {"type": "sometimes"})
        r = await shell(session, "true", workdir)
        assert r["sandbox"]["source"] == "command-line"
        assert "unknown variant `sometimes`" in " ".join(r["warnings"]), r


async def test_a_writable_root_that_does_not_exist_is_dropped_and_calls_keep_working(tmp_path, workdir, outside):
    async with connect(tmp_path) as (session, _):
        await update_sandbox_state(
            session, {"type": "workspace-write", "writable_roots": ["/nonexistent-root-xyz"]}, str(workdir))
        r = await shell(session, f"touch {workdir}/in; touch {outside}/out", workdir)
    assert (workdir / "in").exists()
    assert not (outside / "out").exists()
    assert "`/nonexistent-root-xyz` is not an existing directory: left out" in " ".join(r["warnings"]), r


async def test_input_schema_has_plain_optional_parameters(tmp_path):
    async with connect(tmp_path) as (session, _):
        tool = (await session.list_tools()).tools[0]
    props = tool.input_schema["properties"]
    assert props["login"]["type"] == "boolean"
    assert props["timeout_ms"]["type"] == "integer"
    assert "format" not in json.dumps(tool.input_schema) + json.dumps(tool.output_schema)


class Accept:
    """Answers every elicitation with `accept` and `content`."""

    def __init__(self, content):
        self.content = content
        self.asked = 0

    async def __call__(self, context, params):
        self.asked += 1
        return types.ElicitResult(action="accept", content=self.content)


@pytest.mark.parametrize("content", [None, {}, {"decision": ""}, {"decision": "yes please"}])
async def test_an_accept_without_an_offered_choice_does_not_approve(tmp_path, workdir, content):
    rules = write_rules(tmp_path, 'prefix_rule(pattern=["git", "init"], decision="prompt")\n')
    answers = Accept(content)
    async with connect(tmp_path, rules, elicitation=answers) as (session, _):
        await update_sandbox_state(session, {"type": "read-only"}, str(workdir))
        r = await shell(session, "git init .", workdir)
    assert answers.asked == 1
    # Approved, it would have run escalated, outside the read-only sandbox.
    assert not (workdir / ".git").exists(), r
    [denied] = [e for e in r["execs"] if e["ran_in"] == "denied"]
    assert "none of the offered choices" in denied["reason"], denied
    assert denied["asked_human"] is False and denied["decided_by"] == "supervisor", denied


async def test_no_elicitation_is_not_a_human_decision(tmp_path, workdir):
    rules = write_rules(tmp_path, 'prefix_rule(pattern=["git", "init"], decision="prompt")\n')
    async with connect(tmp_path, rules) as (session, _):
        r = await shell(session, "git init .", workdir)
    [denied] = [e for e in r["execs"] if e["ran_in"] == "denied"]
    assert denied["asked_human"] is False and denied["decided_by"] == "supervisor", denied


class Raw:
    """`execgate mcp` spoken to in raw JSON-RPC lines (what the SDKs refuse to send)."""

    def __init__(self, *extra: str):
        self.proc = subprocess.Popen(
            [str(execgate_bin()), "mcp", "--no-default-rules", *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.last_line = b""

    def send_bytes(self, line: bytes) -> None:
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def send(self, obj: dict) -> None:
        self.send_bytes(json.dumps(obj).encode())

    def answer(self) -> dict:
        self.last_line = self.proc.stdout.readline()
        assert self.last_line, "the server closed stdout"
        return json.loads(self.last_line)

    def initialize(self, id: int = 1) -> None:
        self.send({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
        assert "result" in self.answer()
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call(self, id: int, command: str, workdir: Path) -> dict:
        self.send({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "shell", "arguments": {"command": command, "workdir": str(workdir), "login": False,
                                           "timeout_ms": 60_000}}})
        return self.answer()

    def close(self) -> int:
        self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=10)
        finally:
            self.proc.kill()


def test_a_flood_response_fits_the_budget_and_the_next_call_works(workdir):
    """20 MB of stdout and 3 MB of binary stderr once made a 10.8 MB line, over the
    TypeScript SDKs' 10 MiB buffer."""
    raw = Raw()
    try:
        raw.initialize()
        flood = "head -c 20000000 /dev/zero | tr '\\0' a; head -c 3000000 /dev/urandom >&2"
        reply = raw.call(2, flood, workdir)
        assert len(raw.last_line) <= 2 * 1024 * 1024 + 100, len(raw.last_line)
        r = reply["result"]["structuredContent"]
        assert r["streams"]["stdout"]["total_bytes"] == 20_000_000
        assert r["streams"]["stderr"]["total_bytes"] == 3_000_000
        assert r["stdout"].startswith("aaaa") and r["stdout"].endswith("aaaa")
        assert "more bytes cut here to keep the whole response" in r["stderr"]
        # Beside it, the short text block: the status, the budget's warning, the output's
        # head and tail.
        text = reply["result"]["content"][0]["text"]
        assert text.startswith("Exit code: 0\n") and "response budget" in text, text[:500]
        assert len(text.encode()) < 24 * 1024, len(text.encode())
        reply = raw.call(3, "echo next", workdir)
        assert reply["result"]["structuredContent"]["stdout"] == "next\n"
        # The flag moves the budget.
        assert raw.close() == 0
        raw = Raw("--max-response-bytes", "100000")
        raw.initialize()
        raw.call(2, flood, workdir)
        assert len(raw.last_line) <= 100_000 + 100, len(raw.last_line)
        assert raw.close() == 0
    finally:
        raw.proc.kill()


def test_protocol_edges_get_answers_and_the_server_survives(workdir):
    raw = Raw()
    try:
        # Too early: dropped, not fatal.
        raw.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        # A bad initialize says what is wrong; a good one follows.
        raw.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}})
        reply = raw.answer()
        assert reply["id"] == 1 and reply["error"]["code"] == -32602, reply
        assert "missing field `protocolVersion`" in reply["error"]["message"], reply
        raw.initialize(id=2)
        # Not JSON: -32700, null id.
        raw.send_bytes(b"hello?")
        reply = raw.answer()
        assert reply["id"] is None and reply["error"]["code"] == -32700, reply
        # Invalid UTF-8 in a request: an answer with its id.
        line = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": "shell", "arguments": {"command": "echo XX", "workdir": str(workdir)}}}).encode()
        raw.send_bytes(line.replace(b"XX", b"\xff\xfe"))
        reply = raw.answer()
        assert reply["id"] == 7 and reply["error"]["code"] == -32700, reply
        assert "not valid UTF-8" in reply["error"]["message"]
        reply = raw.call(8, "echo alive", workdir)
        assert reply["result"]["structuredContent"]["stdout"] == "alive\n"
        assert raw.close() == 0
    finally:
        raw.proc.kill()
