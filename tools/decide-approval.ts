import * as z from "zod";
import { defineApproverTool } from "../src/pipeline/tool.js";

/**
 * decide_approval: approve or deny one pending approval. The decision is signed with the
 * approver's key and recorded in the identity's audit log (`approval_decided`); the waiting action
 * then proceeds (once the quorum of distinct approvers approved) or is refused.
 */
export const decideApproval = defineApproverTool({
  name: "decide_approval",
  title: "Decide an approval",
  description:
    "Approves or denies one pending approval you may decide. Your decision is signed with your key and recorded in the agent's audit log; one deny refuses the action, approvals count once per approver towards the quorum. Refusal: `denied: <code>: <why>`.",
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  input: z.strictObject({
    approvalId: z.string().regex(/^apv_[0-9a-f]{20}$/, { message: "must be an approval id (apv_…)" }).describe("From list_approvals"),
    decision: z.enum(["approve", "deny"]).describe("approve lets the exact action shown proceed; deny refuses it"),
    reason: z.string().max(500).regex(/^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]*$/u, { message: "must not contain control characters" }).optional().describe("Why (recorded in the audit log)"),
  }),
  output: z.object({
    approvalId: z.string(),
    decision: z.enum(["approve", "deny"]),
    status: z.enum(["pending", "approved", "denied", "expired", "used"]).describe("The approval's status after this decision (pending: more approvers must approve)"),
  }),
  run: async ({ approver, approvals }, a) => approvals.decide(approver, a.approvalId, a.decision, a.reason),
});
