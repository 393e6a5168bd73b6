/**
 * Builds one McpServer per session, closed over the principal the session's credential names.
 *
 * Tools are filtered before anything is registered: an agent sees `whoami` and the tools of its
 * channels, an admin sees the admin tools, and neither can call what it was not shown. The SDK
 * server stays private here: `tools/list` answers with a listing shared by every session with the
 * same tools, and `tools/call` is answered by the governed pipeline alone, so no tool can be
 * reached around policy and audit.
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { jsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import { CallToolRequestSchema, type CallToolResult, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { SigilError } from "../errors.js";
import type { App } from "../app.js";
import type { Principal } from "../identity/auth.js";
import type { IdentityRecord } from "../../store/types.js";
import { ADMIN_TOOLS, AGENT_TOOLS, APPROVER_TOOLS } from "../../tools/index.js";
import { type AgentSession, callAgentTool } from "../pipeline/agent-call.js";
import { callAdminTool } from "../pipeline/admin-call.js";
import { callApproverTool } from "../pipeline/approver-call.js";
import { track } from "./inflight.js";
import { publishedTool } from "./tool-listing.js";
import { type AdminTool, type AgentTool, type ApproverTool, type ElicitRequest, type ElicitResponse, availableTo } from "../pipeline/tool.js";

export type { Principal };

export const SERVER_INFO = { name: "sigil", version: "0.1.0" };

export function toolsFor(identity: IdentityRecord): AgentTool[] {
  return AGENT_TOOLS.filter((t) => availableTo(t, identity.channels));
}

/**
 * What the model sees, kept small (src/server/tool-listing.ts), built once per set of tools and
 * shared by every session listing that set: sessions register no tools of their own, which keeps
 * an idle HTTP session small.
 */
const listings = new Map<string, { tools: ReturnType<typeof publishedTool>[] }>();

function listOnly(mcp: McpServer, tools: Array<AgentTool | AdminTool | ApproverTool>): void {
  const key = tools.map((t) => t.name).join("\n");
  let listing = listings.get(key);
  if (!listing) listings.set(key, (listing = { tools: tools.map(publishedTool) }));
  const shared = listing;
  mcp.server.setRequestHandler(ListToolsRequestSchema, () => shared);
}

/**
 * The JSON Schema validator a session's server checks elicitation answers with, made on first use:
 * the SDK would otherwise build an Ajv instance for every session (most of an idle HTTP session's
 * memory), though only sessions that ask a human for approval ever use one.
 */
function lazyValidator(): jsonSchemaValidator {
  let inner: AjvJsonSchemaValidator | undefined;
  return { getValidator: (schema) => (inner ??= new AjvJsonSchemaValidator()).getValidator(schema) };
}

export interface SessionDeps {
  app: Pick<App, "agent" | "admin" | "config" | "approvers" | "approvals">;
  sessionId: string;
}

export async function createSessionServer(principal: Principal, deps: SessionDeps): Promise<McpServer> {
  const mcp = new McpServer(SERVER_INFO, { capabilities: { tools: { listChanged: true }, logging: {} }, jsonSchemaValidator: lazyValidator() });
  if (principal.kind === "agent") {
    const agent = deps.app.agent;
    const identity = await agent.store.getIdentity(principal.identityId);
    if (!identity) throw new SigilError("revoked", "this identity no longer exists");
    const tools = toolsFor(identity);
    const byName = new Map(tools.map((t) => [t.name, t]));
    listOnly(mcp, tools);
    const session: AgentSession = {
      deps: agent,
      identityId: principal.identityId,
      tokenHash: principal.tokenHash,
      ...(principal.grantId !== undefined ? { grantId: principal.grantId } : {}),
      sessionId: deps.sessionId,
      memory: { secretsRead: new Set(), untrustedSeen: new Set() },
    };
    // The question travels with the tool call it belongs to (relatedRequestId): over Streamable
    // HTTP that is the call's own response stream, which is open, where a request without it would
    // go to the optional standalone GET stream — and be dropped if the client has not opened one.
    const elicitFor =
      (callId: string | number) =>
      (req: ElicitRequest): Promise<ElicitResponse> =>
        mcp.server.elicitInput(
          { mode: "form", message: req.message, requestedSchema: req.requestedSchema as never },
          // How long a human has to answer: SIGIL_APPROVAL_TIMEOUT_MS (src/config.ts).
          { timeout: deps.app.config.approvalTimeoutMs, relatedRequestId: callId },
        ) as Promise<ElicitResponse>;
    mcp.server.setRequestHandler(CallToolRequestSchema, async (req, extra): Promise<CallToolResult> => {
      // Approval is asked with a form; a client that declared only URL elicitation cannot answer it.
      const canElicit = Boolean(mcp.server.getClientCapabilities()?.elicitation?.form);
      const elicit = canElicit ? elicitFor(extra.requestId) : undefined;
      // A client that opens URLs is sent the approval page (the call keeps waiting for the decision).
      const canOpenUrl = Boolean(mcp.server.getClientCapabilities()?.elicitation?.url);
      const elicitUrl = canOpenUrl
        ? (r: { message: string; url: string; elicitationId: string }) =>
            mcp.server.elicitInput({ mode: "url", message: r.message, url: r.url, elicitationId: r.elicitationId }, { timeout: deps.app.config.approvalTimeoutMs, relatedRequestId: extra.requestId })
        : undefined;
      // Progress while a call waits for a human, when the client asked for it (a progressToken).
      const progressToken = req.params._meta?.progressToken;
      const progress =
        progressToken !== undefined
          ? (p: { progress: number; total?: number; message?: string }) => extra.sendNotification({ method: "notifications/progress", params: { progressToken, ...p } })
          : undefined;
      return track(callAgentTool(session, byName.get(req.params.name), req.params.name, req.params.arguments, elicit, elicitUrl, progress));
    });
  } else if (principal.kind === "approver") {
    const byName = new Map(APPROVER_TOOLS.map((t) => [t.name, t]));
    listOnly(mcp, APPROVER_TOOLS);
    const approverDeps = { approvers: deps.app.approvers, approvals: deps.app.approvals };
    mcp.server.setRequestHandler(CallToolRequestSchema, async (req): Promise<CallToolResult> =>
      track(callApproverTool(approverDeps, principal.approverId, principal.tokenHash, byName.get(req.params.name), req.params.name, req.params.arguments)),
    );
  } else {
    const admin = deps.app.admin;
    // A tenant admin is not shown (and cannot call) the root admin's tools.
    const tools = principal.tenantId === undefined ? ADMIN_TOOLS : ADMIN_TOOLS.filter((t) => !t.rootOnly);
    const byName = new Map(tools.map((t) => [t.name, t]));
    listOnly(mcp, tools);
    const caller = { tokenHash: principal.tokenHash, ...(principal.tenantId !== undefined ? { tenantId: principal.tenantId } : {}) };
    mcp.server.setRequestHandler(CallToolRequestSchema, async (req): Promise<CallToolResult> =>
      track(callAdminTool(admin, caller, byName.get(req.params.name), req.params.name, req.params.arguments)),
    );
  }
  return mcp;
}
