/**
 * `sigil serve` over stdio: one session, bound to the credential in SIGIL_TOKEN or the file named
 * by SIGIL_TOKEN_FILE. A missing, wrong or revoked credential is never served: the process writes
 * one line on stderr, answers the client's `initialize` with a JSON-RPC error carrying the same
 * reason (so the client shows why, not just "connection closed"), and exits 1. Nothing but MCP is
 * ever written to stdout. Shuts down on stdin end, SIGTERM and SIGINT, letting in-flight calls
 * record their results first (briefly: clients kill after ~2 s).
 *
 * The SDK's stdio framing holds at most 10 MiB of one unfinished message; a client that sends more
 * has its transport closed by the SDK. That is a fine bound, but it used to end the process without
 * a word: now it is one line on stderr and exit 1 (nothing is recorded, because no call began).
 * A line that is not a JSON-RPC message is skipped by the SDK; that is said on stderr too.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { STDIO_DEFAULT_MAX_BUFFER_SIZE } from "@modelcontextprotocol/sdk/shared/stdio.js";
import { isJSONRPCRequest } from "@modelcontextprotocol/sdk/types.js";
import { SigilError } from "../errors.js";
import type { App } from "../app.js";
import type { Config } from "../config.js";
import { createSessionServer } from "./factory.js";
import { drainInFlight } from "./inflight.js";
import { RecordTampered } from "../identity/record-mac.js";

export function readSessionToken(config: Pick<Config, "token" | "tokenFile">): string | undefined {
  if (config.token !== undefined) return config.token;
  if (config.tokenFile !== undefined) {
    try {
      return readFileSync(config.tokenFile, "utf8").trim();
    } catch {
      throw new SigilError("unauthenticated", "SIGIL_TOKEN_FILE cannot be read; not serving.");
    }
  }
  return undefined;
}

/** JSON-RPC error code of a refused credential (in the range JSON-RPC leaves to servers). */
export const UNAUTHENTICATED_CODE = -32001;

/** Why a credential is refused, in one sentence that says what to do (no secrets, no paths). */
async function whyRefused(app: App, token: string | undefined): Promise<string> {
  if (!token) {
    return "No session credential: set SIGIL_TOKEN (or SIGIL_TOKEN_FILE) in this server's environment to the agent token `sigil identity create` printed; not serving.";
  }
  if (token.startsWith("sigil_approver_")) {
    return "This sigil home does not know the approver token (it was mistyped, the approver was removed, or it belongs to another home: check SIGIL_TOKEN and SIGIL_HOME); not serving.";
  }
  if (!token.startsWith("sigil_agent_") && !token.startsWith("sigil_admin_")) {
    return "SIGIL_TOKEN is not a sigil token (agent tokens start with sigil_agent_): copy the token `sigil identity create` printed; not serving.";
  }
  if (token.startsWith("sigil_agent_")) {
    let tampered = false;
    const rec = await app.store.identityByTokenHash(app.auth.hash(token)).catch((err: unknown) => {
      tampered = err instanceof RecordTampered;
      return undefined;
    });
    if (tampered) {
      return "The identity's registry record fails its integrity check (it was changed without the master key), so its token is refused: restore the record from a backup, or issue a new identity; not serving.";
    }
    if (rec?.revokedAt) {
      return `The identity ${rec.id} was revoked, so its token no longer works: issue a new identity with \`sigil identity create\`; not serving.`;
    }
    return "This sigil home does not know the session token (it was mistyped, replaced by `sigil identity rotate-token`, or issued by another home: check SIGIL_TOKEN and SIGIL_HOME); get a new one with `sigil identity rotate-token ID`; not serving.";
  }
  return "The admin token is not this home's (check SIGIL_TOKEN and SIGIL_HOME); not serving.";
}

/**
 * Refuses the session: the reason on stderr at once, then as the answer to the client's
 * `initialize` (and any other request), then exit 1. Exits as soon as stdin ends, or after 30 s.
 */
async function refuse(reason: string): Promise<never> {
  process.stderr.write(`sigil: ${reason}\n`);
  const transport = new StdioServerTransport();
  await new Promise<void>((resolve) => {
    const done = (): void => resolve();
    setTimeout(done, 30_000).unref();
    process.stdin.once("end", done);
    process.stdin.once("close", done);
    transport.onerror = done;
    transport.onmessage = (msg) => {
      if (!isJSONRPCRequest(msg)) return;
      void transport
        .send({ jsonrpc: "2.0", id: msg.id, error: { code: UNAUTHENTICATED_CODE, message: reason } })
        .finally(() => (msg.method === "initialize" ? done() : undefined));
    };
    void transport.start();
  });
  process.exit(1);
}

export async function serveStdio(app: App): Promise<void> {
  let token: string | undefined;
  try {
    token = readSessionToken(app.config);
  } catch (err) {
    if (err instanceof SigilError && err.code === "unauthenticated") return refuse(err.publicMessage);
    throw err;
  }
  const principal = token ? await app.auth.principal(token) : undefined;
  if (!principal) return refuse(await whyRefused(app, token));
  const server = await createSessionServer(principal, { app, sessionId: "s_" + randomUUID() });
  const transport = new StdioServerTransport();
  let closing = false;
  const shutdown = async (code: number): Promise<void> => {
    if (closing) return;
    closing = true;
    await drainInFlight(1500);
    await server.close().catch(() => {});
    await app.close().catch(() => {});
    process.exit(code);
  };
  process.stdin.on("end", () => void shutdown(0));
  process.stdin.on("close", () => void shutdown(0));
  process.on("SIGTERM", () => void shutdown(0));
  process.on("SIGINT", () => void shutdown(0));
  // Set before connect: the SDK chains its own handlers after these.
  let overflowed = false;
  transport.onerror = (err) => {
    const message = err instanceof Error ? err.message : String(err);
    if (/exceeded maximum size/.test(message)) {
      overflowed = true;
      process.stderr.write(`sigil: the client sent a message larger than ${STDIO_DEFAULT_MAX_BUFFER_SIZE / (1024 * 1024)} MiB, the most one stdio message may be; closing the session (nothing was recorded for it)\n`);
    } else {
      process.stderr.write(`sigil: skipped a line from the client that is not a JSON-RPC message (${oneLine(message)})\n`);
    }
  };
  transport.onclose = () => {
    if (overflowed) void shutdown(1);
  };
  await server.connect(transport);
}

/** An error's text on one short line, safe for a terminal (no control characters). */
function oneLine(message: string): string {
  const flat = message.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]+/g, " ").trim();
  return flat.length > 200 ? flat.slice(0, 200) + "…" : flat;
}
