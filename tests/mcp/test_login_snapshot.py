"""Login calls and the user's own start-up files (#16.9): with `login: true` the profile runs
once per server (a snapshot every login call starts from), so a prompting exec in it (as
pyenv's `mkdir -p` under a rule) asks nobody, not on every call, and each command still sees
what the profile set (variables, functions, a login shell)."""

from __future__ import annotations

import pytest
from mcp import types

from conftest import connect, shell, write_rules

pytestmark = pytest.mark.anyio

PROFILE = """\
mkdir -p "$HOME/from-profile"
export FROM_PROFILE="yes it is"
greet() { echo "hi from the profile"; }
"""

COMMAND = 'echo "$FROM_PROFILE"; greet; shopt -q login_shell && echo login; echo "${BASH_ENV-unset}"'


class Recorder:
    def __init__(self):
        self.messages: list[str] = []

    async def __call__(self, context, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.messages.append(params.message)
        return types.ElicitResult(action="decline")


def home_with_profile(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bash_profile").write_text(PROFILE)
    return home


async def test_the_profile_runs_once_and_nobody_is_asked_about_it(tmp_path, workdir):
    home = home_with_profile(tmp_path)
    rules = write_rules(tmp_path, 'prefix_rule(pattern=["mkdir"], decision="prompt")\n')
    asked = Recorder()
    async with connect(tmp_path, rules, elicitation=asked, env={"HOME": str(home), "PATH": "/usr/bin:/bin"}) as (session, _):
        results = [await shell(session, COMMAND, workdir, login=True) for _ in range(3)]
        plain = await shell(session, 'echo "${FROM_PROFILE-unset}"', workdir, login=False)
    assert asked.messages == [], asked.messages
    for r in results:
        assert r["exit_code"] == 0, r
        assert r["stdout"] == "yes it is\nhi from the profile\nlogin\nunset\n", r
    # The first call says what the start-up files were refused, once.
    assert any("mkdir -p" in w and "nobody was asked" in w for w in results[0]["warnings"]), results[0]
    assert results[1]["warnings"] == [] and results[2]["warnings"] == []
    assert not (home / "from-profile").exists()
    # login: false does not get the profile's variables.
    assert plain["stdout"] == "unset\n", plain


async def test_without_the_snapshot_every_login_call_asks(tmp_path, workdir):
    home = home_with_profile(tmp_path)
    rules = write_rules(tmp_path, 'prefix_rule(pattern=["mkdir"], decision="prompt")\n')
    asked = Recorder()
    async with connect(
        tmp_path, rules, ["--no-login-snapshot"], elicitation=asked, env={"HOME": str(home), "PATH": "/usr/bin:/bin"}
    ) as (session, _):
        for _ in range(2):
            r = await shell(session, COMMAND, workdir, login=True)
            assert r["stdout"].startswith("yes it is\nhi from the profile\nlogin\n"), r
    assert len(asked.messages) == 2, asked.messages
