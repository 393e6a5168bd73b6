import * as z from "zod";
import { defineApproverTool } from "../src/pipeline/tool.js";
import { APPROVAL_STATUSES } from "../src/approval/approvals.js";

/** An approval as an approver sees it (`sigil approvals list --json` prints the same shape). */
export const ApprovalViewSchema = z.object({
  id: z.string(),
  identityId: z.string(),
  tenantId: z.string(),
  tool: z.string().describe("The agent tool waiting for the decision"),
  action: z.record(z.string(), z.unknown()).describe("Its arguments as the audit log keeps them (message bodies as keyed hashes)"),
  status: z.enum(APPROVAL_STATUSES),
  requestedAt: z.string(),
  expiresAt: z.string().describe("Decide before this; afterwards the action is refused (approval_timeout)"),
  approvers: z.array(z.string()).describe("The approvers the policy names (empty: any approver of the tenant)"),
  quorum: z.number().int(),
  decidedBy: z.array(z.object({ approverId: z.string().optional(), decision: z.enum(["approve", "deny"]), via: z.string(), at: z.string() })).optional(),
});

/**
 * list_approvals: the approvals this approver may decide — its tenant's, where the identity's
 * policy names it or names no one. Status comes from each identity's audit log.
 */
export const listApprovals = defineApproverTool({
  name: "list_approvals",
  title: "List approvals",
  description: "Lists the approvals you may decide (your tenant's, naming you or no one), oldest first, with the exact action each would allow. Filter by status, e.g. pending.",
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  input: z.strictObject({
    status: z.enum(APPROVAL_STATUSES).optional().describe("Only approvals with this status (pending: waiting for a decision)"),
  }),
  output: z.object({ approvals: z.array(ApprovalViewSchema) }),
  run: async ({ approver, approvals }, a) => ({ approvals: await approvals.list({ approver, ...(a.status !== undefined ? { status: a.status } : {}) }) }),
});
