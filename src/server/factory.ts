/**
 * Builds one McpServer per session, closed over the principal the session's credential names.
 *
 * Tools are filtered before anything is registered: an agent sees `whoami` and the tools of its
 * channels, an admin sees the admin tools, and neither can call what it was not shown. The SDK
 * server stays private here: tools are registered for listing, and `tools/call` is answered by
 * the governed pipeline alone, so no tool can be reached around policy and audit.
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { CallToolRequestSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { hashesEqual, tokenHash } from "../crypto/core.js";
import { SigilError, logInternal, refId, safeText } from "../errors.js";
import type { Providers } from "../providers/index.js";
import type { Sigil } from "../sigil.js";
import type { IdentityRecord } from "../../store/types.js";
import { ADMIN_TOOLS, AGENT_TOOLS } from "../../tools/index.js";
import { type AgentSession, callAgentTool, deniedResult, describeIssues } from "../pipeline/agent-call.js";
import { track } from "./inflight.js";
import type { AdminTool, AgentTool, ElicitRequest, ElicitResponse } from "../pipeline/tool.js";

export const SERVER_INFO = { name: "sigil", version: "0.1.0" };

export type Principal =
  | { kind: "agent"; identityId: string; tokenHash: string }
  | { kind: "admin"; tokenHash: string };

/** Resolves a bearer token to a principal, or undefined (wrong, revoked, or not a sigil token). */
export async function authenticate(sigil: Sigil, token: string | undefined): Promise<Principal | undefined> {
  if (!token) return undefined;
  if (token.startsWith("sigil_admin_")) return (await sigil.authenticateAdmin(token)) ? { kind: "admin", tokenHash: tokenHash(token) } : undefined;
  const rec = await sigil.authenticateAgent(token);
  return rec ? { kind: "agent", identityId: rec.id, tokenHash: rec.tokenHash } : undefined;
}

export function toolsFor(identity: IdentityRecord): AgentTool[] {
  return AGENT_TOOLS.filter((t) => t.channel === null || identity.channels.includes(t.channel));
}

const stub = (): never => {
  throw new Error("tools are called through the governed pipeline");
};

function registerForListing(mcp: McpServer, tools: Array<AgentTool | AdminTool>): void {
  for (const t of tools) {
    mcp.registerTool(t.name, { title: t.title, description: t.description, inputSchema: t.input, outputSchema: t.output, annotations: t.annotations }, stub);
  }
  mcp.server.removeRequestHandler("tools/call");
}

/** How long a human has to answer an approval request: SIGIL_APPROVAL_TIMEOUT_MS (1 s to 1 h), default 120 s. */
export function approvalTimeoutMs(env: NodeJS.ProcessEnv): number {
  const raw = env.SIGIL_APPROVAL_TIMEOUT_MS?.trim();
  const n = raw ? Number(raw) : NaN;
  return Number.isInteger(n) && n >= 1000 && n <= 3_600_000 ? n : 120_000;
}

export interface SessionDeps {
  sigil: Sigil;
  providers: Providers;
  sessionId: string;
}

export async function createSessionServer(principal: Principal, deps: SessionDeps): Promise<McpServer> {
  const mcp = new McpServer(SERVER_INFO, { capabilities: { tools: {}, logging: {} } });
  if (principal.kind === "agent") {
    const identity = await deps.sigil.store.getIdentity(principal.identityId);
    if (!identity) throw new SigilError("revoked", "this identity no longer exists");
    const tools = toolsFor(identity);
    const byName = new Map(tools.map((t) => [t.name, t]));
    registerForListing(mcp, tools);
    const session: AgentSession = {
      sigil: deps.sigil,
      identityId: principal.identityId,
      tokenHash: principal.tokenHash,
      sessionId: deps.sessionId,
      memory: { secretsRead: new Set() },
      providers: deps.providers,
    };
    // The question travels with the tool call it belongs to (relatedRequestId): over Streamable
    // HTTP that is the call's own response stream, which is open, where a request without it would
    // go to the optional standalone GET stream — and be dropped if the client has not opened one.
    const elicitFor =
      (callId: string | number) =>
      (req: ElicitRequest): Promise<ElicitResponse> =>
        mcp.server.elicitInput(
          { mode: "form", message: req.message, requestedSchema: req.requestedSchema as never },
          { timeout: approvalTimeoutMs(deps.sigil.env), relatedRequestId: callId },
        ) as Promise<ElicitResponse>;
    mcp.server.setRequestHandler(CallToolRequestSchema, async (req, extra): Promise<CallToolResult> => {
      // Approval is asked with a form; a client that declared only URL elicitation cannot answer it.
      const canElicit = Boolean(mcp.server.getClientCapabilities()?.elicitation?.form);
      const elicit = canElicit ? elicitFor(extra.requestId) : undefined;
      return track(callAgentTool(session, byName.get(req.params.name), req.params.name, req.params.arguments, elicit));
    });
  } else {
    const byName = new Map(ADMIN_TOOLS.map((t) => [t.name, t]));
    registerForListing(mcp, ADMIN_TOOLS);
    mcp.server.setRequestHandler(CallToolRequestSchema, async (req): Promise<CallToolResult> =>
      track(callAdminTool(deps.sigil, principal.tokenHash, byName.get(req.params.name), req.params.name, req.params.arguments)),
    );
  }
  return mcp;
}

async function callAdminTool(sigil: Sigil, hash: string, tool: AdminTool | undefined, name: string, rawArgs: unknown): Promise<CallToolResult> {
  try {
    const meta = await sigil.store.meta();
    if (!hashesEqual(meta.adminTokenHash, hash)) return deniedResult("unauthenticated", "the admin token is no longer valid.");
  } catch (err) {
    const ref = refId();
    logInternal(ref, "registry read", err);
    return deniedResult("registry_unavailable", `the registry cannot be read (${ref}).`);
  }
  if (!tool) return deniedResult("tool_not_available", `there is no admin tool "${safeText(name, 64)}".`);
  const parsed = tool.input.safeParse(rawArgs ?? {});
  if (!parsed.success) return deniedResult("invalid_arguments", describeIssues(parsed.error as never));
  try {
    const result = await tool.run({ sigil }, parsed.data);
    return { content: [{ type: "text", text: JSON.stringify(result) }], structuredContent: result };
  } catch (err) {
    if (err instanceof SigilError) {
      const isRefusal = ["invalid_arguments", "invalid_policy", "not_found", "revoked"].includes(err.code);
      return isRefusal ? deniedResult(err.code, err.publicMessage) : { isError: true, content: [{ type: "text", text: `error: ${err.code}: ${safeText(err.publicMessage)}` }] };
    }
    const ref = refId();
    logInternal(ref, `admin tool ${tool.name}`, err);
    return { isError: true, content: [{ type: "text", text: `error: internal_error: the operation failed (${ref}).` }] };
  }
}
