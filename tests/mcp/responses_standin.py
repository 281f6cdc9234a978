"""A stand-in for the OpenAI Responses API on 127.0.0.1, scripted to drive the Codex CLI.

Codex (`codex exec`, `wire_api = "responses"`) POSTs the whole conversation to
`{base_url}/responses` on every turn and reads the answer as server-sent events. The
stand-in answers turn N (N = how many tool results the request carries) with the N-th
scripted `function_call` of execgate's `shell` tool, and once the script is done with a
final assistant message, so a run is bounded by the script's length. Every request is kept:
the test reads what execgate answered Codex in the next request's `function_call_output`.

The event shapes are those of Codex's own test mock (codex-rs/core/tests/common/
responses.rs): `response.created`, `response.output_item.done` with the item, and
`response.completed` with a usage block. MCP tools are offered to the model as a
`namespace` tool (`mcp__SERVER`) whose functions keep the MCP tool's name, so the call names
`namespace` and `name`.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

USAGE = {"input_tokens": 0, "input_tokens_details": None, "output_tokens": 0,
         "output_tokens_details": None, "total_tokens": 0}


class ResponsesStandIn:
    """`calls`: the `shell` arguments to ask for, one per turn, in order."""

    def __init__(self, calls: list[dict[str, Any]], namespace: str = "mcp__execgate", tool: str = "shell"):
        self.calls = calls
        self.namespace = namespace
        self.tool = tool
        self.requests: list[dict[str, Any]] = []
        self.unexpected: list[str] = []
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                standin._record_unexpected(f"GET {self.path}")
                self._send(404, "application/json", b'{"error":"not here"}')

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if not self.path.endswith("/responses") or self.headers.get("content-encoding"):
                    standin._record_unexpected(f"POST {self.path} {self.headers.get('content-encoding')}")
                    self._send(404, "application/json", b'{"error":"not here"}')
                    return
                request = json.loads(body)
                with standin._lock:
                    standin.requests.append(request)
                    turn = len(standin.requests)
                events = standin._answer(request, turn)
                sse = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
                self._send(200, "text/event-stream", sse.encode())

            def _send(self, status: int, ctype: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "ResponsesStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def _record_unexpected(self, what: str) -> None:
        with self._lock:
            self.unexpected.append(what)

    def _answer(self, request: dict[str, Any], turn: int) -> list[dict[str, Any]]:
        done = sum(1 for item in request.get("input", []) if item.get("type") == "function_call_output")
        rid = f"resp-{turn}"
        if done < len(self.calls):
            item = {"type": "function_call", "call_id": f"call-{done}", "namespace": self.namespace,
                    "name": self.tool, "arguments": json.dumps(self.calls[done])}
        else:
            item = {"type": "message", "role": "assistant", "id": f"msg-{turn}",
                    "content": [{"type": "output_text", "text": "all done"}]}
        return [
            {"type": "response.created", "response": {"id": rid}},
            {"type": "response.output_item.done", "item": item},
            {"type": "response.completed", "response": {"id": rid, "usage": USAGE}},
        ]

    def tool_outputs(self) -> list[str]:
        """The `function_call_output` of each scripted call, as Codex sent it back, in order."""
        if not self.requests:
            return []
        by_id = {}
        for item in self.requests[-1].get("input", []):
            if item.get("type") == "function_call_output":
                output = item["output"]
                if isinstance(output, list):  # content items
                    output = "".join(part.get("text", "") for part in output)
                by_id[item["call_id"]] = output
        return [by_id[f"call-{i}"] for i in range(len(self.calls)) if f"call-{i}" in by_id]

    def results(self) -> list[dict[str, Any]]:
        """execgate's `shell` results as they reached the model: the JSON after Codex's
        `Wall time: ...\\nOutput:\\n` header."""
        found = []
        for text in self.tool_outputs():
            match = re.search(r"^\{", text, re.MULTILINE)
            assert match, f"no JSON result in what Codex sent back: {text[:2000]!r}"
            found.append(json.loads(text[match.start():]))
        return found
