#!/usr/bin/env python3
"""A minimal MCP client over a container's stdin/stdout, for tests/container/run.

    mcp_client.py exchange COMMAND_JSON... -- PODMAN_RUN_ARGV...
        initialize, tools/list, then one tools/call `shell` per COMMAND_JSON (the tool's
        arguments as JSON); prints one JSON line per call result, then closes stdin and
        prints `exit N` with the container's status.
    mcp_client.py stop NAME -- PODMAN_RUN_ARGV...
        initialize, start a call that sleeps, `podman stop NAME` once it runs; prints
        `stopped-in SECONDS` and `exit N`.

Plain JSON-RPC, newline-delimited (the stdio transport): no SDK, so it runs on the host's
python3 without a venv. Exits 1 with the reason on anything unexpected.
"""

import json
import subprocess
import sys
import time

LIMIT = 120


def fail(why):
    print(f"mcp_client: {why}", file=sys.stderr)
    sys.exit(1)


class Client:
    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.next_id = 1

    def send(self, message):
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def request(self, method, params, wait=True):
        rid = self.next_id
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        return self.response(rid) if wait else rid

    def response(self, rid):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                fail(f"the server closed stdout before answering request {rid}")
            message = json.loads(line)
            if message.get("id") == rid and ("result" in message or "error" in message):
                if "error" in message:
                    fail(f"request {rid}: {message['error']}")
                return message["result"]

    def initialize(self):
        result = self.request("initialize", {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "execgate-container-test", "version": "0"},
        })
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return result

    def close(self):
        self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            fail("the server did not exit after its stdin closed")


def split(args):
    if "--" not in args:
        fail("usage: see the docstring")
    i = args.index("--")
    return args[:i], args[i + 1:]


def exchange(args):
    calls, argv = split(args)
    client = Client(argv)
    info = client.initialize()
    print(json.dumps({"server": info.get("serverInfo", {}).get("name")}))
    tools = client.request("tools/list", {})
    print(json.dumps({"tools": [t["name"] for t in tools.get("tools", [])]}))
    for call in calls:
        result = client.request("tools/call", {"name": "shell", "arguments": json.loads(call)})
        print(json.dumps(result.get("structuredContent", result)))
    print(f"exit {client.close()}")


def stop(args):
    (name,), argv = split(args)
    client = Client(argv)
    client.initialize()
    client.request("tools/call", {"name": "shell", "arguments": {
        "command": "echo running > /tmp/call-running; exec sleep 300",
        "workdir": "/workspace", "timeout_ms": 600000}}, wait=False)
    deadline = time.monotonic() + LIMIT
    while subprocess.run(["podman", "exec", name, "test", "-e", "/tmp/call-running"],
                         capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            fail("the call never started")
        time.sleep(0.2)
    started = time.monotonic()
    subprocess.run(["podman", "stop", "-t", "20", name], capture_output=True)
    print(f"stopped-in {time.monotonic() - started:.1f}")
    print(f"exit {client.close()}")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("exchange", "stop"):
        fail("usage: mcp_client.py exchange|stop ...")
    {"exchange": exchange, "stop": stop}[sys.argv[1]](sys.argv[2:])
