/**
 * What a tool module declares, and what it receives. Agent tools never see the raw MCP server nor
 * the application: they get a ToolContext of narrow capabilities for the bound identity (its view,
 * its parsed policy, a signer for its active key, a reader of its vault, the providers, the
 * session's memory, a clock and a keyed hash), so no tool can write to the store or the audit chain
 * around the pipeline (agent-call.ts), which does everything else. Admin tools get the admin
 * operations they call (AdminContext).
 */
import type * as z from "zod";
import type { ToolAnnotations } from "@modelcontextprotocol/sdk/types.js";
import type { Action, NormalizedAction } from "../policy/evaluate.js";
import type { Policy } from "../policy/schema.js";
import type { ApproverRecord, Channel } from "../../store/types.js";
import type { Approvals } from "../approval/approvals.js";
import type { Signer } from "../crypto/jwk.js";
import type { Providers } from "../providers/index.js";
import type { IdentityView } from "../identity/records.js";
import type { VaultReader } from "../identity/secrets.js";
import type { Identities } from "../identity/identities.js";
import type { Secrets } from "../identity/secrets.js";
import type { AuditLog } from "../identity/audit-log.js";
import type { Tenants } from "../tenant/tenants.js";
import type { InboxReader } from "../inbound/messages.js";
import type { Approvers } from "../approval/approvers.js";
import type { ApprovalView } from "../approval/approvals.js";
import type { ApprovalState, ChainState } from "../audit/chain.js";
import type { MandateDesk } from "../mandates/desk.js";

export interface SessionMemory {
  /** Secret values this session has read with vault_get (in memory only, for the exfiltration guard). */
  readonly secretsRead: Set<string>;
  /**
   * Inbound messages marked untrusted that this session was shown (list_messages, read_message):
   * once there is one, policy `approval.afterUntrustedInput` asks before every outbound action.
   */
  untrustedSeen?: Set<string>;
}

export interface ElicitRequest {
  message: string;
  requestedSchema: { type: "object"; properties: Record<string, unknown>; required?: string[] };
}
export type ElicitResponse = { action: "accept"; content?: Record<string, unknown> } | { action: "decline" | "cancel" };

export interface ToolContext {
  /** The bound identity as it stood when the call was authorised (never its token hash or sealed keys). */
  identity: IdentityView;
  policy: Policy;
  sessionId: string;
  /** A Signer for the identity's active key (the one its audit chain signs with). */
  signer(): Promise<Signer>;
  /** The identity's own vault secrets. */
  vault: VaultReader;
  providers: Providers;
  memory: SessionMemory;
  /** The clock (injected: tests drive a fixed one). */
  now(): number;
  /** The server's public https origin (SIGIL_PUBLIC_URL), if it has one. */
  publicUrl?: string;
  /** Keyed hash for values that must not appear in the audit log. */
  hash(value: string): string;
  /** The identity's inbound messages (src/inbound/messages.ts), opened for it alone. */
  inbox: InboxReader;
  /** Payment mandates: issue an open pair on policy's terms, close an issued one, answer a Verifiable Intent L2 (src/mandates/desk.ts). */
  mandates?: Pick<MandateDesk, "issue" | "present" | "presentIntent">;
}

export interface ToolOutcome {
  /** structuredContent (the pipeline adds `receipt`). */
  structured: Record<string, unknown>;
  text: string;
  providerId?: string;
  /** What the audit result entry records (never secrets). Defaults to `structured`. */
  audit?: Record<string, unknown>;
}

/** What a tool's `prepare` made: the first phase of its act, without effect until `run` completes it. */
export interface PreparedAct {
  discard(): Promise<void>;
}

export interface AgentTool<S extends z.ZodObject = z.ZodObject> {
  name: string;
  title: string;
  description: string;
  /** The channel that lists this tool (several: any of them); null for tools every identity has (whoami). */
  channel: Channel | readonly Channel[] | null;
  annotations: ToolAnnotations;
  input: S;
  output: z.ZodObject;
  /** "act": intent entry before the side effect, result entry after. "read": one entry before. */
  effect: "read" | "act";
  /** The action policy evaluates. */
  action(args: z.output<S>): Action;
  /** The arguments as the audit log records them: sensitive values as keyed hashes. */
  redact(args: z.output<S>, hash: (v: string) => string): Record<string, unknown>;
  idempotencyKey?(args: z.output<S>): string | undefined;
  /** Session-level refusals evaluated before policy (e.g. the exfiltration guard). */
  guard?(ctx: ToolContext, args: z.output<S>): { reason: string; message: string } | undefined;
  /**
   * The tool hands the model text from outside (inbound messages): its arguments carry nothing
   * outbound, so the exfiltration guard checks them without recording them as outbound text.
   */
  inbound?: true;
  /**
   * Refusals that depend on what the identity's log records (a payment mandate's earlier uses),
   * decided under the chain's lock after policy allowed the action, so two racing calls see each
   * other: the one decided second sees the first's intent.
   */
  checkState?(ctx: ToolContext, args: z.output<S>, normalized: NormalizedAction, chain: Pick<ChainState, "mandate">, nowMs: number): { reason: string; message: string } | undefined;
  /** The question put to the human when policy asks for approval. */
  approval?(args: z.output<S>, normalized: NormalizedAction): ElicitRequest;
  /**
   * Optional first phase of the act, started while the intent entry is being flushed (so its disk
   * flush overlaps the log's). It must have no effect anyone can observe — nothing sent, nothing
   * charged, nothing a crash could leave delivered — and be safe to abandon: the pipeline hands it
   * to `run`, which completes or discards it, or discards it itself if the call goes no further.
   */
  prepare?(ctx: ToolContext, args: z.output<S>): Promise<PreparedAct | undefined>;
  run(ctx: ToolContext, args: z.output<S>, normalized: NormalizedAction, prepared?: PreparedAct): Promise<ToolOutcome>;
}

/** Whether an identity with these channels has this tool. */
export function availableTo(tool: Pick<AgentTool, "channel">, channels: readonly Channel[]): boolean {
  if (tool.channel === null) return true;
  return typeof tool.channel === "string" ? channels.includes(tool.channel) : tool.channel.some((c) => channels.includes(c));
}

export function defineTool<S extends z.ZodObject>(tool: AgentTool<S>): AgentTool {
  return tool as unknown as AgentTool;
}

/**
 * What admin tools may call: the identity, vault, audit and tenant operations (the CLI's, too).
 * A tenant admin gets the same operations narrowed to its tenant (src/tenant/scope.ts).
 */
export interface AdminContext {
  identities: Pick<Identities, "create" | "list" | "show" | "updatePolicy" | "rotateKey" | "rotateToken" | "revoke">;
  secrets: Pick<Secrets, "put" | "delete" | "resetGuard">;
  audit: Pick<AuditLog, "query" | "verify">;
  tenants: Pick<Tenants, "create" | "list">;
  /**
   * A tenant's approvers and approval requests. Admins manage approvers and see approvals; they do
   * not decide them (approvers decide, with their own signed credential: README "Approvals").
   */
  approvers: Pick<Approvers, "add" | "list" | "remove">;
  approvals: { list(opts: { tenantId?: string; status?: ApprovalState["status"] }): Promise<ApprovalView[]> };
}

/** A tool of a human's surface (admin or approver): its published form and what it runs with context `C`. */
interface SurfaceTool<C, S extends z.ZodObject> {
  name: string;
  title: string;
  description: string;
  annotations: ToolAnnotations;
  input: S;
  output: z.ZodObject;
  run(ctx: C, args: z.output<S>): Promise<Record<string, unknown>>;
}

export interface AdminTool<S extends z.ZodObject = z.ZodObject> extends SurfaceTool<AdminContext, S> {
  /** Only the root admin (the `sigil init` token) is shown this tool; tenant admins are not. */
  rootOnly?: boolean;
}

export function defineAdminTool<S extends z.ZodObject>(tool: AdminTool<S>): AdminTool {
  return tool as unknown as AdminTool;
}

/** What approver tools may call: the approvals their approver may see and decide (src/approval/). */
export interface ApproverContext {
  /** The approver this session's token names, as it stands for this call. */
  approver: ApproverRecord;
  approvals: Pick<Approvals, "list" | "decide">;
}

export type ApproverTool<S extends z.ZodObject = z.ZodObject> = SurfaceTool<ApproverContext, S>;

export function defineApproverTool<S extends z.ZodObject>(tool: ApproverTool<S>): ApproverTool {
  return tool as unknown as ApproverTool;
}
