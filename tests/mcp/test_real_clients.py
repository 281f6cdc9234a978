"""`execgate mcp` driven by clients nobody on this project wrote (issue 16).

- The Codex CLI (`codex exec`, the pinned npm release), talking to a local stand-in for
  the Responses API (responses_standin.py) that asks it for `shell` calls; Codex sends its
  sandbox as `_meta["codex/sandbox-state-meta"]` (from `--sandbox`) and hands execgate's
  result back to the "model", which is where the test reads it.
- The MCP TypeScript SDK v1 and v2 (tests/clients/sdk-client.mjs), with Ajv validating
  the schemas in strict mode and every `structuredContent` against `outputSchema`.
- The MCP Inspector CLI.

The clients are installed in tests/clients/node_modules by scripts/setup-clients. Without
them these tests skip, and fail under EXECGATE_REQUIRE_ALL=1 (scripts/test). Everything
stays on 127.0.0.1; sandbox claims are checked on disk, outside the sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import REPO, execgate_bin
from responses_standin import ResponsesStandIn

CLIENTS = REPO / "tests" / "clients"
RUN_TIMEOUT = 90


def require_client(name: str) -> Path:
    """`node_modules/.bin/NAME` (and node): skip without it, or fail under REQUIRE_ALL."""
    path = CLIENTS / "node_modules" / ".bin" / name
    why = None
    if shutil.which("node") is None:
        why = "node is not installed (scripts/setup installs Node 20)"
    elif not path.exists():
        why = f"{path} is missing: run scripts/setup-clients"
    if why is None:
        return path
    if os.environ.get("EXECGATE_REQUIRE_ALL") == "1":
        pytest.fail(f"{why} (EXECGATE_REQUIRE_ALL=1)")
    pytest.skip(why)


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Runs a client in its own process group, killed whole (server included) on timeout."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{argv[0]} did not finish in {RUN_TIMEOUT} s\nstdout: {out[-4000:]}\nstderr: {err[-4000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.fixture
def place() -> Path:
    """A fresh directory outside /tmp (writable under workspace-write) for the agent's
    workspace and, beside it, a directory outside every writable root."""
    d = Path("/var/lib") / f"execgate-clients-{uuid.uuid4().hex}"
    (d / "work").mkdir(parents=True)
    (d / "outside").mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --- Codex CLI ------------------------------------------------------------------------

def toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a TOML basic string, for the paths used here


def codex_exec(tmp_path: Path, calls: list[dict], sandbox: str, cwd: Path,
               rules: str | None = None) -> tuple[list[dict], subprocess.CompletedProcess]:
    """`codex exec --sandbox SANDBOX` in `cwd` with execgate as its MCP server, configured
    as the README says; the stand-in asks for `calls` in order. Returns execgate's result
    for each call as Codex handed it back to the model.

    `rules`: a rules file put in Codex's own CODEX_HOME/rules, which the server finds
    through the `env` line of the README's snippet (Codex does not pass CODEX_HOME)."""
    codex = require_client("codex")
    home = tmp_path / "home"  # HOME: no rules of the machine's user in ~/.codex
    codex_home = tmp_path / "codex-home"
    (codex_home / "rules").mkdir(parents=True)
    home.mkdir()
    if rules is not None:
        (codex_home / "rules" / "test.rules").write_text(rules)
    with ResponsesStandIn(calls) as standin:
        (codex_home / "config.toml").write_text(f"""\
model = "stand-in-model"
model_provider = "standin"
check_for_update_on_startup = false

[analytics]
enabled = false

[model_providers.standin]
name = "Responses API stand-in"
base_url = {toml_str(standin.base_url)}
wire_api = "responses"
env_key = "STANDIN_API_KEY"
request_max_retries = 0
stream_max_retries = 0

[features]
shell_tool = false
unified_exec = false

[mcp_servers.execgate]
command = {toml_str(execgate_bin())}
args = ["mcp"]
default_tools_approval_mode = "approve"
env = {{ CODEX_HOME = {toml_str(codex_home)} }}
""")
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(codex_home),
               "STANDIN_API_KEY": "dummy-key", "NO_COLOR": "1"}
        done = run([str(codex), "exec", "--skip-git-repo-check", "--ephemeral", "--color", "never",
                    "--sandbox", sandbox, "-C", str(cwd), "run the scripted commands"], env=env)
        context = f"codex exit {done.returncode}\nstdout: {done.stdout[-4000:]}\nstderr: {done.stderr[-4000:]}"
        assert done.returncode == 0, context
        assert standin.unexpected == [], context
        assert len(standin.requests) == len(calls) + 1, context
        results = standin.results()
    assert len(results) == len(calls), context
    for request in standin.requests:  # what Codex offered the model: execgate's shell tool
        names = [(t.get("name"), [f.get("name") for f in t.get("tools", [])]) for t in request["tools"]]
        assert ("mcp__execgate", ["shell"]) in names, names
    return results, done


def test_codex_allowed_command_output_reaches_the_model(tmp_path, place):
    work = place / "work"
    [r], _ = codex_exec(tmp_path, [{"command": "echo hello from codex; pwd", "workdir": str(work), "login": False}],
                        "workspace-write", work)
    assert r["exit_code"] == 0 and r["execs"] == [], r
    assert r["stdout"] == f"hello from codex\n{work}\n", r
    # The sandbox came from Codex's permissionProfile in the call's _meta.
    assert (r["sandbox"]["mode"], r["sandbox"]["source"], r["warnings"]) == ("workspace-write", "tool-call-meta", []), r
    assert str(work) in r["sandbox"]["writable_roots"], r


@pytest.mark.parametrize("sandbox, in_cwd, outside", [
    ("read-only", False, False),
    ("workspace-write", True, False),
    ("danger-full-access", True, True),
])
def test_codex_sandbox_mode_decides_what_a_command_may_write(tmp_path, place, sandbox, in_cwd, outside):
    """Codex's --sandbox reaches execgate and is enforced: a canary in the workspace and one
    outside every root, checked on disk."""
    work = place / "work"
    command = f"echo in-cwd > canary; echo outside > {place}/outside/canary; echo done"
    [r], _ = codex_exec(tmp_path, [{"command": command, "workdir": str(work), "login": False}], sandbox, work)
    assert (r["sandbox"]["mode"], r["sandbox"]["source"]) == (sandbox, "tool-call-meta"), r
    assert r["stdout"] == "done\n", r
    assert (work / "canary").exists() == in_cwd, r
    assert (place / "outside" / "canary").exists() == outside, r
    if not in_cwd:
        assert "canary" in r["stderr"], r


def test_codex_rules_forbid_and_escalate(tmp_path, place):
    """Rules in Codex's CODEX_HOME: `rm` forbidden (the reason reaches the model, the file
    stays), `touch` allowed by a rule and so escalated: it writes outside the read-only
    sandbox."""
    work = place / "work"
    (work / "victim").write_text("keep me")
    rules = (
        'prefix_rule(pattern=["rm"], decision="forbidden", justification="deleting needs a person")\n'
        'prefix_rule(pattern=["touch"], decision="allow")\n'
    )
    calls = [
        {"command": "rm victim", "workdir": str(work), "login": False},
        {"command": f"touch {place}/outside/escalated", "workdir": str(work), "login": False},
    ]
    (forbidden, escalated), _ = codex_exec(tmp_path, calls, "read-only", work, rules=rules)
    assert forbidden["exit_code"] != 0, forbidden
    [e] = forbidden["execs"]
    assert (e["argv"], e["decision"], e["ran_in"], e["decided_by"]) == (["rm", "victim"], "forbidden", "denied", "rule"), e
    assert "deleting needs a person" in e["reason"] and "test.rules:1" in e["reason"], e
    assert "deleting needs a person" in forbidden["stderr"], forbidden
    assert (work / "victim").read_text() == "keep me"

    assert escalated["sandbox"]["mode"] == "read-only" and escalated["exit_code"] == 0, escalated
    [e] = escalated["execs"]
    assert (e["argv"][0], e["decision"], e["ran_in"], e["exit_code"]) == ("touch", "allow", "escalated", 0), e
    assert (place / "outside" / "escalated").exists()


def test_codex_prompt_is_asked_through_codex_and_its_answer_holds(tmp_path, place):
    """A prompt decision becomes an elicitation to Codex; `codex exec` has nobody to ask
    and declines, so the exec is denied even in a workspace where it could write."""
    work = place / "work"
    rules = 'prefix_rule(pattern=["mkdir"], decision="prompt", justification="new directories need a yes")\n'
    [r], _ = codex_exec(tmp_path, [{"command": "mkdir asked; echo status=$?", "workdir": str(work), "login": False}],
                        "workspace-write", work, rules=rules)
    [e] = r["execs"]
    assert (e["argv"], e["decision"], e["ran_in"]) == (["mkdir", "asked"], "prompt", "denied"), e
    assert "declined" in e["reason"], e
    # codex exec declines without asking anybody: no human decision is claimed.
    assert e["asked_human"] is False and e["decided_by"] == "supervisor", e
    assert r["stdout"] == "status=126\n", r
    assert not (work / "asked").exists()


# --- TypeScript SDK v1 and v2 ---------------------------------------------------------

@pytest.mark.parametrize("version", ["v1", "v2"])
def test_typescript_sdk(tmp_path, place, version):
    require_client("codex")  # the marker that scripts/setup-clients ran
    work = place / "work"
    (work / "victim").write_text("keep me")
    rules = tmp_path / "ts.rules"
    rules.write_text('prefix_rule(pattern=["rm"], decision="forbidden", justification="no deleting from TypeScript")\n')
    done = run(["node", str(CLIENTS / "sdk-client.mjs"), version, str(work), str(execgate_bin()),
                "mcp", "--no-default-rules", "--rules", str(rules)], cwd=CLIENTS)
    assert done.returncode == 0, f"stdout: {done.stdout[-4000:]}\nstderr: {done.stderr[-8000:]}"
    report = json.loads(done.stdout)
    assert report["tools"] == ["shell"] and report["warnings"] == [], report
    results = report["results"]

    assert results["echo"]["stdout"] == f"hello from {version}\n", results["echo"]

    forbidden = results["forbidden"]
    [e] = forbidden["execs"]
    assert (e["decision"], e["ran_in"]) == ("forbidden", "denied"), e
    assert "no deleting from TypeScript" in e["reason"], e
    assert forbidden["stdout"] == "rm-status=126\n", forbidden
    assert (work / "victim").read_text() == "keep me"

    # 5 MB of output: one response within the 2 MiB budget, head and tail kept, cut marked.
    big = results["big"]
    stdout = big["streams"]["stdout"]
    assert stdout["total_bytes"] == 5_000_000 + len("\ntail-marker\n"), big
    assert stdout["budget_cut_bytes"] > 0 and big["stdout_length"] < 1_000_000, big
    assert big["stdout_head"] == "x" * 64 and big["stdout_tail"].endswith("x\ntail-marker\n"), big
    # One marker where the middle went, counting both cuts (the cap's and the budget's).
    marker = big["stdout_cut_marker"]
    assert f"{stdout['budget_cut_bytes']} more bytes cut here" in marker, big
    assert f"besides the {stdout['cut_bytes']} bytes the output cap cut here" in marker, big
    assert any("response budget" in w for w in big["warnings"]), big
    assert report["response_bytes"]["big"] <= 2 * 1024 * 1024, report["response_bytes"]
    # ... and the connection is still there.
    assert results["after"]["stdout"] == "still connected\n", results["after"]


# --- MCP Inspector CLI ----------------------------------------------------------------

def inspector(*args: str) -> dict:
    done = run([str(require_client("mcp-inspector")), "--cli", str(execgate_bin()), "mcp", "--no-default-rules",
                *args], cwd=CLIENTS)
    assert done.returncode == 0, f"stdout: {done.stdout[-4000:]}\nstderr: {done.stderr[-4000:]}"
    return json.loads(done.stdout)


def test_inspector_cli_lists_and_calls_shell_with_typed_arguments(place):
    listed = inspector("--method", "tools/list")
    assert [t["name"] for t in listed["tools"]] == ["shell"], listed

    work = place / "work"
    # login=false and timeout_ms=500 arrive as a boolean and an integer: not a login shell,
    # and the sleep is killed at 0.5 s.
    result = inspector("--method", "tools/call", "--tool-name", "shell",
                       "--tool-arg", "command=shopt -q login_shell && echo login || echo not-login; sleep 5",
                       "--tool-arg", f"workdir={work}", "--tool-arg", "login=false", "--tool-arg", "timeout_ms=500")
    assert result["isError"] is False, result
    r = result["structuredContent"]
    assert r["stdout"] == "not-login\n", r
    [block] = result["content"]
    assert block["text"].startswith("Exit code: 137\n") and block["text"].endswith("\nOutput:\nnot-login\n"), block
    assert r["timed_out"] is True and r["duration_ms"] < 4000, r
