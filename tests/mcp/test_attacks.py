"""Attacks on `execgate mcp` through its tool call: the agent's arguments are not grants.

Each test tries what an agent written to get out would try and checks the effect outside
the session: a canary file in a fresh directory outside /tmp and outside every writable
root of the server, or the secret's absence from what the call could read.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from conftest import connect, shell, update_sandbox_state

pytestmark = pytest.mark.anyio

SECRET = "canary-secret-3f9c1e"


@pytest.fixture
def outside() -> Path:
    """A fresh directory outside /tmp, outside the server's workspace and writable roots."""
    base = Path("/var/lib")
    if not base.is_dir():
        pytest.fail("/var/lib does not exist: the attack needs a directory outside /tmp")
    d = base / f"execgate-canary-{uuid.uuid4().hex}"
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def server_cwd(tmp_path: Path) -> Path:
    d = tmp_path / "server-cwd"
    d.mkdir(exist_ok=True)
    return d


WRITE = "echo pwned > {target} ; pwd"


async def test_workdir_outside_the_writable_roots_is_not_a_grant(tmp_path, outside):
    """No sandbox state: the call's workdir is where the command runs, read-only."""
    canary = outside / "canary"
    async with connect(tmp_path, cwd=server_cwd(tmp_path)) as (session, _):
        r = await shell(session, WRITE.format(target=canary), outside)
    assert not canary.exists(), r
    # It ran there all the same.
    assert r["stdout"].strip() == str(outside), r
    assert str(outside) not in r["sandbox"]["writable_roots"], r


async def test_workdir_slash_does_not_make_the_filesystem_writable(tmp_path, outside):
    """The reported attack: `workdir: "/"` made every directory writable."""
    canary = outside / "canary"
    async with connect(tmp_path, cwd=server_cwd(tmp_path)) as (session, _):
        r = await shell(session, WRITE.format(target=canary), Path("/"))
    assert not canary.exists(), r
    assert "/" not in r["sandbox"]["writable_roots"], r


async def test_workdir_is_not_a_grant_under_a_sandbox_state_update(tmp_path, workdir, outside):
    """The client's sandbox state names another sandboxCwd: only that one is writable."""
    canary = outside / "canary"
    async with connect(tmp_path, cwd=server_cwd(tmp_path)) as (session, _):
        await update_sandbox_state(session, {"type": "workspace-write"}, str(workdir))
        r = await shell(session, WRITE.format(target=canary), Path("/"))
        ok = await shell(session, "echo fine > inside", workdir)
    assert not canary.exists(), r
    assert r["sandbox"]["source"] == "sandbox-state-update", r
    # The sandboxCwd itself stays writable.
    assert ok["exit_code"] == 0 and (workdir / "inside").read_text() == "fine\n", ok


async def test_workdir_is_not_a_grant_under_tool_call_meta(tmp_path, workdir, outside):
    canary = outside / "canary"
    meta = {
        "codex/sandbox-state-meta": {
            "sandboxPolicy": {"type": "workspace-write"},
            "sandboxCwd": str(workdir),
        }
    }
    async with connect(tmp_path, cwd=server_cwd(tmp_path)) as (session, _):
        result = await session.call_tool(
            "shell",
            {"command": WRITE.format(target=canary), "workdir": str(outside), "login": False},
            meta=meta,
        )
    assert not canary.exists(), result
    assert not result.is_error, result.content


async def test_the_servers_writable_roots_stay_writable(tmp_path, outside):
    """A root the person named on the command line is writable from any workdir."""
    canary = outside / "granted"
    async with connect(
        tmp_path, extra=["--writable-root", str(outside)], cwd=server_cwd(tmp_path)
    ) as (session, _):
        r = await shell(session, WRITE.format(target=canary), Path("/"))
    assert canary.read_text() == "pwned\n", r


# What a call reads of its environment: its own, every /proc environ it can see, and
# its parent's.
READ_ENV = (
    "env > env.txt; tr '\\0' '\\n' < /proc/self/environ >> env.txt; "
    "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' >> env.txt; "
    "tr '\\0' '\\n' < /proc/$PPID/environ >> env.txt 2>/dev/null; true"
)

ENV = {
    "OPENAI_API_KEY": SECRET,
    "GITHUB_TOKEN": SECRET + "-gh",
    "AWS_SECRET_ACCESS_KEY": SECRET + "-aws",
    "MY_DB_PASSWORD": SECRET + "-db",
    "EXECGATE_PLAIN_VALUE": "plain-visible",
}


async def test_credentials_in_the_servers_environment_are_not_passed(tmp_path, workdir):
    async with connect(tmp_path, env=ENV, cwd=server_cwd(tmp_path)) as (session, _):
        r = await shell(session, READ_ENV, workdir)
    seen = (workdir / "env.txt").read_text()
    assert r["exit_code"] == 0, r
    assert SECRET not in seen, seen
    assert SECRET not in r["stdout"] + r["stderr"]
    # Not a blanket wipe: an ordinary variable and PATH still arrive.
    assert "EXECGATE_PLAIN_VALUE=plain-visible" in seen, seen
    assert "PATH=" in seen, seen


async def test_pass_env_passes_the_named_credential_only(tmp_path, workdir):
    async with connect(
        tmp_path, env=ENV, extra=["--pass-env", "OPENAI_API_KEY"], cwd=server_cwd(tmp_path)
    ) as (session, _):
        await shell(session, READ_ENV, workdir)
    seen = (workdir / "env.txt").read_text()
    assert f"OPENAI_API_KEY={SECRET}" in seen, seen
    assert SECRET + "-gh" not in seen and SECRET + "-aws" not in seen, seen


async def test_inherit_env_none_passes_only_the_named(tmp_path, workdir):
    async with connect(
        tmp_path,
        env=ENV,
        extra=["--inherit-env", "none", "--pass-env", "EXECGATE_PLAIN_VALUE"],
        cwd=server_cwd(tmp_path),
    ) as (session, _):
        r = await shell(session, "env", workdir)
    names = sorted(line.split("=", 1)[0] for line in r["stdout"].splitlines() if "=" in line)
    assert "EXECGATE_PLAIN_VALUE" in names, names
    assert "HOME" not in names and "OPENAI_API_KEY" not in names, names


async def test_a_unix_socket_outside_is_unreachable_unless_the_server_names_it(tmp_path, workdir):
    """Network off: a daemon's socket outside the call (here: this test's listener) gets no
    connection, and the result says unix sockets are decided; the server's
    `--allow-unix-socket PATH` opens that one socket, whatever the client's sandbox state."""
    import socket as socketlib

    path = tmp_path / "daemon.sock"
    listener = socketlib.socket(socketlib.AF_UNIX)
    listener.bind(str(path))
    listener.listen(4)
    listener.setblocking(False)
    probe = f"python3 -c \"import socket; socket.socket(socket.AF_UNIX).connect('{path}')\"; echo connect=$?"
    try:
        async with connect(tmp_path) as (session, _):
            r = await shell(session, probe, workdir, login=False)
        assert r["sandbox"]["unix_sockets"] == "decided", r
        assert "connect=0" not in r["stdout"], r
        with pytest.raises(BlockingIOError):
            listener.accept()
        async with connect(tmp_path, extra=["--allow-unix-socket", str(path)]) as (session, _):
            r = await shell(session, probe, workdir, login=False)
        assert "connect=0" in r["stdout"], r
        conn, _ = listener.accept()
        conn.close()
    finally:
        listener.close()


async def test_egress_by_name_reaches_allowed_hosts_and_reports_blocked_ones(tmp_path, workdir):
    """The server's `--allow-domain` opens one host through the proxy; another host is
    refused, its upstream (outside the call) receives nothing, and the result names it in
    `blocked_hosts` so the agent learns why its download failed."""
    import http.server
    import threading

    hits = {"allowed": 0, "denied": 0}

    def server(ip: str, key: str) -> http.server.HTTPServer:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                hits[key] += 1
                body = b"from upstream"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        srv = http.server.ThreadingHTTPServer((ip, 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv

    allowed, denied = server("127.0.0.10", "allowed"), server("127.0.0.11", "denied")
    a_port, d_port = allowed.server_address[1], denied.server_address[1]
    extra = [
        "--allow-domain", f"pkgs.test:{a_port}",
        "--allow-domain", f"127.0.0.10:{a_port}",
        "--proxy-resolve", "pkgs.test=127.0.0.10",
        "--proxy-resolve", "evil.test=127.0.0.11",
    ]
    script = (
        f"curl -fsS http://pkgs.test:{a_port}/; echo ' ok='$?; "
        f"curl -fsS http://evil.test:{d_port}/; echo ' evil='$?"
    )
    try:
        async with connect(tmp_path, extra=extra) as (session, _):
            r = await shell(session, script, workdir, login=False)
    finally:
        allowed.shutdown()
        denied.shutdown()
    assert "from upstream ok=0" in r["stdout"], r
    assert "evil=0" not in r["stdout"], r
    assert hits == {"allowed": 1, "denied": 0}, hits
    assert r["blocked_hosts"] == [f"evil.test:{d_port}"], r
    assert r["sandbox"]["egress"] == "proxy", r
    assert "net" in r["sandbox"]["namespaces"], r


async def test_a_prompt_host_rule_asks_once_or_for_the_session_and_no_means_nothing_sent(
    tmp_path, workdir
):
    """`network_rule(..., decision="prompt")`: the proxy asks "Allow agent to connect to
    `host:port`?"; "approve" lets one connection through, "approve for session" every later
    one without asking again, a decline sends nothing to the upstream outside."""
    import http.server
    import threading

    from mcp import types

    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.12", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    rules = tmp_path / "net.rules"
    rules.write_text(
        f'network_rule(host="mirror.test:{port}", protocol="http", decision="prompt", '
        f'justification="the package mirror")\n'
        f'network_rule(host="127.0.0.12:{port}", protocol="http", decision="allow")\n'
    )
    extra = ["--rules", str(rules), "--proxy-resolve", "mirror.test=127.0.0.12"]
    url = f"http://mirror.test:{port}"
    messages: list[str] = []

    def answering(decision):
        async def answer(context, params):
            messages.append(params.message)
            if decision is None:
                return types.ElicitResult(action="decline")
            return types.ElicitResult(action="accept", content={"decision": decision})

        return answer

    try:
        async with connect(tmp_path, extra=extra, elicitation=answering(None)) as (session, _):
            r = await shell(session, f"curl -fsS {url}/no; echo ' rc='$?", workdir, login=False)
        assert "rc=0" not in r["stdout"], r
        assert hits == [], hits
        assert r["blocked_hosts"] == [f"mirror.test:{port}"], r
        assert messages == [
            f"Allow agent to connect to `mirror.test:{port}`?\n"
            f"Asked by: {rules}:1 (the package mirror)"
        ], messages
        messages.clear()
        async with connect(
            tmp_path, extra=extra, elicitation=answering("approve-for-session")
        ) as (session, _):
            r = await shell(
                session,
                f"curl -fsS {url}/a && curl -fsS {url}/b; echo ' rc='$?",
                workdir,
                login=False,
            )
        assert "okok rc=0" in r["stdout"], r
        assert hits == ["/a", "/b"], hits
        assert len(messages) == 1, messages
    finally:
        srv.shutdown()

