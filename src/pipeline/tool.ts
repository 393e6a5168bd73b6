/**
 * What a tool module declares. Agent tools never see the raw MCP server: they get a context with
 * the bound identity and their dependencies, and the pipeline (pipeline.ts) does everything else.
 */
import type * as z from "zod";
import type { ToolAnnotations } from "@modelcontextprotocol/sdk/types.js";
import type { Action, NormalizedAction } from "../policy/evaluate.js";
import type { Policy } from "../policy/schema.js";
import type { Channel, IdentityRecord } from "../../store/types.js";
import type { Sigil } from "../sigil.js";
import type { Providers } from "../providers/index.js";

export interface SessionMemory {
  /** Secret values this session has read with vault_get (in memory only, for the exfiltration guard). */
  readonly secretsRead: Set<string>;
}

export interface ElicitRequest {
  message: string;
  requestedSchema: { type: "object"; properties: Record<string, unknown>; required?: string[] };
}
export type ElicitResponse = { action: "accept"; content?: Record<string, unknown> } | { action: "decline" | "cancel" };

export interface ToolContext {
  identity: IdentityRecord;
  policy: Policy;
  sessionId: string;
  sigil: Sigil;
  providers: Providers;
  memory: SessionMemory;
  /** Keyed hash for values that must not appear in the audit log. */
  hash(value: string): string;
}

export interface ToolOutcome {
  /** structuredContent (the pipeline adds `receipt`). */
  structured: Record<string, unknown>;
  text: string;
  providerId?: string;
  /** What the audit result entry records (never secrets). Defaults to `structured`. */
  audit?: Record<string, unknown>;
}

export interface AgentTool<S extends z.ZodObject = z.ZodObject> {
  name: string;
  title: string;
  description: string;
  /** The channel that lists this tool; null for tools every identity has (whoami). */
  channel: Channel | null;
  annotations: ToolAnnotations;
  input: S;
  output: z.ZodObject;
  /** "act": intent entry before the side effect, result entry after. "read": one entry before. */
  effect: "read" | "act";
  /** The action policy evaluates. */
  action(args: z.output<S>, identity: IdentityRecord): Action;
  /** The arguments as the audit log records them: sensitive values as keyed hashes. */
  redact(args: z.output<S>, hash: (v: string) => string): Record<string, unknown>;
  idempotencyKey?(args: z.output<S>): string | undefined;
  /** Session-level refusals evaluated before policy (e.g. the exfiltration guard). */
  guard?(ctx: ToolContext, args: z.output<S>): { reason: string; message: string } | undefined;
  /** The question put to the human when policy asks for approval. */
  approval?(args: z.output<S>, normalized: NormalizedAction): ElicitRequest;
  run(ctx: ToolContext, args: z.output<S>, normalized: NormalizedAction): Promise<ToolOutcome>;
}

export function defineTool<S extends z.ZodObject>(tool: AgentTool<S>): AgentTool {
  return tool as unknown as AgentTool;
}

export interface AdminContext {
  sigil: Sigil;
}

export interface AdminTool<S extends z.ZodObject = z.ZodObject> {
  name: string;
  title: string;
  description: string;
  annotations: ToolAnnotations;
  input: S;
  output: z.ZodObject;
  run(ctx: AdminContext, args: z.output<S>): Promise<Record<string, unknown>>;
}

export function defineAdminTool<S extends z.ZodObject>(tool: AdminTool<S>): AdminTool {
  return tool as unknown as AdminTool;
}
