/**
 * Every MCP tool sigil has. Nothing else registers tools: the server factory lists these, filtered
 * by what the caller may use, and routes every call through the governed pipeline.
 */
import type { AdminTool, AgentTool, ApproverTool } from "../src/pipeline/tool.js";
import { whoami } from "./whoami.js";
import { signHttpRequest } from "./sign-http-request.js";
import { sendEmail } from "./send-email.js";
import { sendSms } from "./send-sms.js";
import { placeCall } from "./place-call.js";
import { createIdentity } from "./admin/create-identity.js";
import { listIdentities } from "./admin/list-identities.js";
import { getIdentity } from "./admin/get-identity.js";
import { updatePolicy } from "./admin/update-policy.js";
import { rotateKey } from "./admin/rotate-key.js";
import { rotateToken } from "./admin/rotate-token.js";
import { revokeIdentity } from "./admin/revoke-identity.js";
import { queryAudit } from "./admin/query-audit.js";
import { verifyAudit } from "./admin/verify-audit.js";
import { vaultGet } from "./vault-get.js";
import { cardCharge } from "./card-charge.js";
import { createPaymentMandate } from "./create-payment-mandate.js";
import { presentPaymentMandate } from "./present-payment-mandate.js";
import { putSecret } from "./admin/put-secret.js";
import { deleteSecret } from "./admin/delete-secret.js";
import { resetGuard } from "./admin/reset-guard.js";
import { createTenant } from "./admin/create-tenant.js";
import { listTenants } from "./admin/list-tenants.js";
import { listApprovals } from "./list-approvals.js";
import { addApprover, listApprovers, listTenantApprovals, removeApprover } from "./admin/approvers.js";
import { decideApproval } from "./decide-approval.js";
import { listMessages } from "./list-messages.js";
import { readMessage } from "./read-message.js";

export const AGENT_TOOLS: AgentTool[] = [whoami, sendEmail, sendSms, placeCall, vaultGet, cardCharge, signHttpRequest, listMessages, readMessage, createPaymentMandate, presentPaymentMandate];

export const ADMIN_TOOLS: AdminTool[] = [
  createIdentity,
  listIdentities,
  getIdentity,
  updatePolicy,
  rotateKey,
  rotateToken,
  revokeIdentity,
  queryAudit,
  verifyAudit,
  putSecret,
  deleteSecret,
  resetGuard,
  createTenant,
  listTenants,
  addApprover,
  listApprovers,
  removeApprover,
  listTenantApprovals,
];

/** The surface of an approver token (`sigil_approver_…`): the approvals it may see and decide. */
export const APPROVER_TOOLS: ApproverTool[] = [listApprovals, decideApproval];
