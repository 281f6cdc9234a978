""""Approve and remember" over MCP elicitation: the rule shown in the message is appended to
the --amend-rules file in Codex's bytes, and the next server runs the command escalated
without asking. The effect is a file outside every writable root that only an escalated
`rm` can remove."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import anyio
import pytest
from mcp import types

from conftest import connect, shell

pytestmark = pytest.mark.anyio


class Remember:
    """Answers every elicitation with `choice`, recording the message and the offered choices."""

    def __init__(self, choice: str):
        self.choice = choice
        self.messages: list[str] = []
        self.offered: list[list[str]] = []

    async def __call__(self, context, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.messages.append(params.message)
        one_of = params.requested_schema["properties"]["decision"]["oneOf"]
        self.offered.append([c["const"] for c in one_of])
        return types.ElicitResult(action="accept", content={"decision": self.choice})


async def test_approve_and_remember_writes_the_rule_and_the_next_server_does_not_ask(tmp_path, workdir):
    # Outside every writable root (workspace-write makes /tmp writable, as Codex's does).
    outside = Path(f"/var/lib/execgate-mcp-amend-{uuid.uuid4().hex}")
    outside.mkdir(parents=True)
    try:
        await remember_then_run(tmp_path, workdir, outside)
    finally:
        shutil.rmtree(outside, ignore_errors=True)


async def remember_then_run(tmp_path, workdir, outside):
    victim = outside / "victim"
    victim.write_text("x")
    rules = outside / "codex-home" / "rules" / "default.rules"
    extra = ["--amend-rules", str(rules)]
    command = f"rm -f {victim}; echo rm=$?"

    answers = Remember("approve-and-remember")
    async with connect(tmp_path, extra=extra, elicitation=answers) as (session, _):
        r = await shell(session, command, workdir)
    line = f'prefix_rule(pattern=["rm", "-f", {json.dumps(str(victim))}], decision="allow")'
    assert len(answers.messages) == 1, answers.messages
    assert answers.offered[0] == ["approve", "approve-for-session", "approve-and-remember"]
    assert f'"Approve and remember" appends to {rules}' in answers.messages[0], answers.messages[0]
    assert line in answers.messages[0], answers.messages[0]
    # Approved inside the sandbox this time: the file outside every writable root stays.
    assert victim.exists(), r
    for _ in range(50):  # the append runs on a blocking thread after the answer
        if rules.exists():
            break
        await anyio.sleep(0.1)
    assert rules.read_text() == line + "\n"

    again = Remember("approve")
    async with connect(tmp_path, extra=extra, elicitation=again) as (session, _):
        r = await shell(session, command, workdir)
    assert again.messages == [], again.messages
    assert r["stdout"] == "rm=0\n", r
    assert not victim.exists(), r
    assert [e["ran_in"] for e in r["execs"] if e["argv"][:1] == ["rm"]] == ["escalated"], r["execs"]
    assert rules.read_text() == line + "\n"


async def test_remember_is_offered_only_where_a_rule_can_help(tmp_path, workdir):
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    asked_by_rule = rules_dir / "prompt.rules"
    asked_by_rule.write_text('prefix_rule(pattern=["rm"], decision="prompt")\n')
    amend = tmp_path / "amend.rules"
    # A client that answers "remember" although it was not offered: denied, nothing written.
    answers = Remember("approve-and-remember")
    async with connect(tmp_path, asked_by_rule, ["--amend-rules", str(amend)], elicitation=answers) as (session, _):
        r = await shell(session, f"rm -f {tmp_path}/nothing; echo rm=$?", workdir)
    assert answers.offered == [["approve", "approve-for-session"]], answers.offered
    assert "approve-and-remember" not in answers.messages[0]
    assert "none of the offered choices" in json.dumps(r["execs"]), r
    assert not amend.exists()
