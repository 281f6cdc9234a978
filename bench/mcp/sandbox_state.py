"""Codex's `codex/sandbox-state/update` request for the MCP Python SDK (shared by bench and tests)."""

from __future__ import annotations

from typing import Any, Literal

from mcp import ClientSession, types


class SandboxStateUpdate(types.Request[dict[str, Any], Literal["codex/sandbox-state/update"]]):
    method: Literal["codex/sandbox-state/update"] = "codex/sandbox-state/update"


async def update_sandbox_state(session: ClientSession, policy: dict[str, Any], cwd: str | None = None) -> None:
    params: dict[str, Any] = {"sandboxPolicy": policy}
    if cwd is not None:
        params["sandboxCwd"] = cwd
    await session.send_request(SandboxStateUpdate(params=params), types.EmptyResult)
