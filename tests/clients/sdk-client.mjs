// An MCP client written with the official TypeScript SDK (v1: @modelcontextprotocol/sdk,
// v2: @modelcontextprotocol/client) driving `execgate mcp` over stdio, as an agent would.
//
//   node sdk-client.mjs v1|v2 WORKDIR EXECGATE [SERVER ARGS...]
//
// Lists the tools, compiles `shell`'s inputSchema and outputSchema with Ajv (draft 2020-12,
// strict mode, every warning captured), then calls `shell` with: an echo, `rm victim`
// (the caller's rules forbid rm), 5 MB of output, and an echo again (the connection
// survived the big response). Each result's structuredContent is validated against the
// outputSchema and must equal its JSON text. Anything printed through console.warn or
// console.error (the SDK's own validator, Ajv's logger) or emitted as a process warning
// is a failure. Prints one JSON report on stdout (the test asserts on what execgate did);
// exits 1 with the problems on stderr when a check failed.

import process from "node:process";

const warnings = [];
for (const level of ["warn", "error"]) {
  console[level] = (...args) => warnings.push(`console.${level}: ${args.map(String).join(" ")}`);
}
process.on("warning", (w) => warnings.push(`process warning: ${w.name}: ${w.message}`));

const [version, workdir, command, ...serverArgs] = process.argv.slice(2);
if (!["v1", "v2"].includes(version) || !workdir || !command) {
  process.stderr.write("usage: node sdk-client.mjs v1|v2 WORKDIR EXECGATE [SERVER ARGS...]\n");
  process.exit(2);
}

const { Client, StdioClientTransport } =
  version === "v1"
    ? {
        ...(await import("@modelcontextprotocol/sdk/client/index.js")),
        ...(await import("@modelcontextprotocol/sdk/client/stdio.js")),
      }
    : {
        ...(await import("@modelcontextprotocol/client")),
        ...(await import("@modelcontextprotocol/client/stdio")),
      };
const { default: Ajv2020 } = await import("ajv/dist/2020.js");

const problems = [];
const ajvLogger = {
  log: () => {},
  warn: (...args) => warnings.push(`ajv warn: ${args.map(String).join(" ")}`),
  error: (...args) => warnings.push(`ajv error: ${args.map(String).join(" ")}`),
};

function compile(name, schema) {
  const ajv = new Ajv2020({ strict: true, allErrors: true, logger: ajvLogger });
  try {
    return ajv.compile(schema);
  } catch (e) {
    problems.push(`${name} does not compile under Ajv strict mode: ${e.message}`);
    return null;
  }
}

const transport = new StdioClientTransport({ command, args: serverArgs, stderr: "inherit" });
const client = new Client({ name: `execgate-test-sdk-${version}`, version: "1.0.0" });
await client.connect(transport);

const report = { version, tools: [], results: {}, response_bytes: {} };
try {
  const { tools } = await client.listTools();
  report.tools = tools.map((t) => t.name);
  const shell = tools.find((t) => t.name === "shell");
  if (!shell) throw new Error(`no shell tool in ${JSON.stringify(report.tools)}`);
  const validInput = compile("inputSchema", shell.inputSchema);
  const validOutput = compile("outputSchema", shell.outputSchema);
  if (!validInput || !validOutput) throw new Error("schemas do not compile");

  // The input schema accepts what the tool takes and rejects what it does not.
  const goodArgs = { command: "true", workdir, login: false, timeout_ms: 500 };
  if (!validInput(goodArgs)) problems.push(`inputSchema rejects ${JSON.stringify(goodArgs)}: ${JSON.stringify(validInput.errors)}`);
  for (const bad of [{ workdir }, { command: "true", workdir, login: "no" }, { command: "true", workdir, timeout_ms: 1.5 }]) {
    if (validInput(bad)) problems.push(`inputSchema accepts ${JSON.stringify(bad)}`);
  }

  const calls = {
    echo: `echo hello from ${version}`,
    forbidden: "rm victim; echo rm-status=$?",
    // Over the response budget: three capped texts (stdout, stderr, both interleaved).
    big: "head -c 5000000 /dev/zero | tr '\\0' x; echo; echo tail-marker; head -c 3000000 /dev/zero | tr '\\0' y >&2",
    after: "echo still connected",
  };
  for (const [name, cmd] of Object.entries(calls)) {
    const result = await client.callTool({ name: "shell", arguments: { command: cmd, workdir, login: false, timeout_ms: 20000 } });
    report.response_bytes[name] = Buffer.byteLength(JSON.stringify(result));
    if (result.isError) {
      problems.push(`${name}: isError: ${JSON.stringify(result.content).slice(0, 2000)}`);
      continue;
    }
    const structured = result.structuredContent;
    if (!validOutput(structured)) {
      problems.push(`${name}: structuredContent does not match outputSchema: ${JSON.stringify(validOutput.errors)}`);
    }
    // The text block beside it: the status, then the output (its head and tail when long).
    const text = result.content?.[0]?.text ?? "";
    if (!text.startsWith(`Exit code: ${structured?.exit_code}\n`) || !text.includes("\nOutput:\n")) {
      problems.push(`${name}: the text block is not the result's status and output: ${text.slice(0, 300)}`);
    }
    report.results[name] = structured;
  }
} catch (e) {
  problems.push(`${e?.stack ?? e}`);
} finally {
  await client.close();
}

// The big result is summarized: the test needs its counts and ends, not 2 MB of x.
const big = report.results.big;
if (big) {
  for (const key of ["stdout", "output"]) {
    big[`${key}_length`] = big[key].length;
    big[`${key}_head`] = big[key].slice(0, 64);
    big[`${key}_tail`] = big[key].slice(-64);
    big[`${key}_cut_marker`] = big[key].replace(/^x+/, "").replace(/x+\n?tail-marker\n$/, "").slice(0, 300);
    delete big[key];
  }
}
report.warnings = warnings;
process.stdout.write(JSON.stringify(report) + "\n");
for (const w of warnings) problems.push(`warning: ${w}`);
if (problems.length) {
  process.stderr.write(`sdk-client ${version}: ${problems.length} problem(s):\n${problems.join("\n")}\n`);
  process.exit(1);
}
