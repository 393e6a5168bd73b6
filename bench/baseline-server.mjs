#!/usr/bin/env node
/**
 * The benchmark baseline: a bare @modelcontextprotocol/sdk server over stdio exposing `whoami`
 * (no arguments) and `send_sms` with the same strict zod input schema as sigil's, doing nothing.
 * Everything sigil measures above this is the cost of governance (authentication, policy, the
 * signed and fsync'd audit log, the durable outbox).
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import * as z from "zod";

const server = new McpServer({ name: "baseline", version: "0.0.0" }, { capabilities: { tools: {} } });

server.registerTool(
  "whoami",
  { title: "Who am I", description: "Describes nothing.", inputSchema: z.strictObject({}) },
  async () => ({ content: [{ type: "text", text: "baseline" }] }),
);

server.registerTool(
  "send_sms",
  {
    title: "Send an SMS",
    description: "Sends nothing.",
    inputSchema: z.strictObject({
      to: z.string().min(1).max(32).describe("the recipient in E.164, e.g. +14155550123"),
      body: z.string().min(1).max(1600).describe("the message text"),
      idempotencyKey: z.string().min(1).max(200).optional().describe("a key that makes a retry return the first result"),
    }),
  },
  async () => ({ content: [{ type: "text", text: "sent nothing" }] }),
);

await server.connect(new StdioServerTransport());
process.stdin.on("end", () => process.exit(0));
