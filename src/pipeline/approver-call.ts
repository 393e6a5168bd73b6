/**
 * The approver call, the third surface beside the agent and admin calls, sharing their refusal
 * model (results.ts):
 *
 *   authenticate (the session's approver token still names a current, authentic approver) → find
 *   the tool → validate strictly → run the operation
 *
 * The operations (src/approval/approvals.ts) see only the approver's tenant's approvals that name
 * it or no one (anything else is `not_found`) and write decisions into the identity's log.
 */
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { logInternal, refId, safeText } from "../errors.js";
import type { Approvers } from "../approval/approvers.js";
import type { Approvals } from "../approval/approvals.js";
import type { ApproverTool } from "./tool.js";
import { deniedResult, describeIssues, failureResult } from "./results.js";

export interface ApproverDeps {
  approvers: Pick<Approvers, "stillValid">;
  approvals: Pick<Approvals, "list" | "decide">;
}

export async function callApproverTool(deps: ApproverDeps, approverId: string, tokenHash: string, tool: ApproverTool | undefined, name: string, rawArgs: unknown): Promise<CallToolResult> {
  let approver;
  try {
    approver = await deps.approvers.stillValid(approverId, tokenHash);
  } catch (err) {
    const ref = refId();
    logInternal(ref, "registry read", err);
    return deniedResult("registry_unavailable", `the registry cannot be read (${ref}).`);
  }
  if (!approver) return deniedResult("unauthenticated", "this approver token is no longer valid.");
  if (!tool) return deniedResult("tool_not_available", `there is no approver tool "${safeText(name, 64)}".`);
  const parsed = tool.input.safeParse(rawArgs ?? {});
  if (!parsed.success) return deniedResult("invalid_arguments", describeIssues(parsed.error as never));
  try {
    const result = await tool.run({ approver, approvals: deps.approvals }, parsed.data);
    return { content: [{ type: "text", text: JSON.stringify(result) }], structuredContent: result };
  } catch (err) {
    return failureResult(err, `approver tool ${tool.name}`, "the operation failed");
  }
}
