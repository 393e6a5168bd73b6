/**
 * The admin call, beside the agent call (agent-call.ts) and sharing its refusal model (results.ts):
 *
 *   authenticate (the session's admin token is still the home's) → find the tool → validate
 *   strictly → run the operation
 *
 * The operations themselves (src/identity/) write their own audit entries and refuse bad input
 * with `Denied` before changing anything. A tenant admin's call runs the same operations narrowed
 * to its tenant (src/tenant/scope.ts); tools for the root admin alone do not exist for it.
 */
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { logInternal, refId, safeText } from "../errors.js";
import type { Authenticator } from "../identity/auth.js";
import type { AdminContext, AdminTool } from "./tool.js";
import type { Store } from "../../store/types.js";
import { type Membership, scopedAdmin } from "../tenant/scope.js";
import { deniedResult, describeIssues, failureResult } from "./results.js";

export interface AdminDeps {
  auth: Pick<Authenticator, "adminStillValid">;
  ops: AdminContext;
  /** What a tenant admin's scope reads (its identities' records) and how membership is decided. */
  store: Pick<Store, "getIdentity">;
  member?: Membership;
}

/** Who is calling: the admin token's hash and, for a tenant admin, its tenant (absent: the root admin). */
export interface AdminCaller {
  tokenHash: string;
  tenantId?: string;
}

export async function callAdminTool(deps: AdminDeps, caller: AdminCaller, tool: AdminTool | undefined, name: string, rawArgs: unknown): Promise<CallToolResult> {
  try {
    if (!(await deps.auth.adminStillValid(caller.tokenHash, caller.tenantId))) return deniedResult("unauthenticated", "the admin token is no longer valid.");
  } catch (err) {
    const ref = refId();
    logInternal(ref, "registry read", err);
    return deniedResult("registry_unavailable", `the registry cannot be read (${ref}).`);
  }
  if (!tool || (tool.rootOnly && caller.tenantId !== undefined)) return deniedResult("tool_not_available", `there is no admin tool "${safeText(name, 64)}".`);
  const parsed = tool.input.safeParse(rawArgs ?? {});
  if (!parsed.success) return deniedResult("invalid_arguments", describeIssues(parsed.error as never));
  try {
    const ops = caller.tenantId === undefined ? deps.ops : scopedAdmin(deps.ops, deps.store, caller.tenantId, deps.member);
    const result = await tool.run(ops, parsed.data);
    return { content: [{ type: "text", text: JSON.stringify(result) }], structuredContent: result };
  } catch (err) {
    return failureResult(err, `admin tool ${tool.name}`, "the operation failed");
  }
}
