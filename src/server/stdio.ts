/**
 * `sigil serve` over stdio: one session, bound to the credential in SIGIL_TOKEN or the file named
 * by SIGIL_TOKEN_FILE. A missing, wrong or revoked credential ends the process before anything is
 * served. Nothing but MCP is ever written to stdout. Shuts down on stdin end, SIGTERM and SIGINT,
 * letting in-flight calls record their results first (briefly: clients kill after ~2 s).
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { SigilError } from "../errors.js";
import { providersFromEnv } from "../providers/index.js";
import type { Sigil } from "../sigil.js";
import { authenticate, createSessionServer } from "./factory.js";
import { drainInFlight } from "./inflight.js";

export function readSessionToken(env: NodeJS.ProcessEnv): string | undefined {
  if (env.SIGIL_TOKEN && env.SIGIL_TOKEN.trim() !== "") return env.SIGIL_TOKEN.trim();
  if (env.SIGIL_TOKEN_FILE) {
    try {
      return readFileSync(env.SIGIL_TOKEN_FILE, "utf8").trim();
    } catch {
      throw new SigilError("unauthenticated", "SIGIL_TOKEN_FILE cannot be read; not serving.");
    }
  }
  return undefined;
}

export async function serveStdio(sigil: Sigil): Promise<void> {
  const token = readSessionToken(sigil.env);
  if (!token) throw new SigilError("unauthenticated", "No session credential: set SIGIL_TOKEN or SIGIL_TOKEN_FILE; not serving.");
  const principal = await authenticate(sigil, token);
  if (!principal) throw new SigilError("unauthenticated", "The session token is wrong or revoked; not serving.");
  const server = await createSessionServer(principal, {
    sigil,
    providers: providersFromEnv(sigil.env, sigil.outboxDir),
    sessionId: "s_" + randomUUID(),
  });
  const transport = new StdioServerTransport();
  let closing = false;
  const shutdown = async (code: number): Promise<void> => {
    if (closing) return;
    closing = true;
    await drainInFlight(1500);
    await server.close().catch(() => {});
    await sigil.close().catch(() => {});
    process.exit(code);
  };
  process.stdin.on("end", () => void shutdown(0));
  process.stdin.on("close", () => void shutdown(0));
  process.on("SIGTERM", () => void shutdown(0));
  process.on("SIGINT", () => void shutdown(0));
  await server.connect(transport);
}
