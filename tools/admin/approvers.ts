/**
 * Approver management on the admin surface (a tenant admin: its own tenant's; another tenant's
 * approver or tenant is `not_found`, word for word as a missing one — src/tenant/scope.ts). Admins
 * add, list and remove approvers and see approvals; approvers decide (their own signed credential).
 */
import * as z from "zod";
import { defineAdminTool } from "../../src/pipeline/tool.js";
import { APPROVAL_STATUSES } from "../../src/approval/approvals.js";
import { ApprovalViewSchema } from "../list-approvals.js";
import { ADMIN, ADMIN_READ } from "./schemas.js";

const ApproverView = z.object({
  id: z.string(),
  tenantId: z.string(),
  name: z.string(),
  email: z.string().optional(),
  keyId: z.string(),
  publicKey: z.string(),
  createdAt: z.string(),
  removedAt: z.string().optional(),
});

export const addApprover = defineAdminTool({
  name: "add_approver",
  title: "Add approver",
  description: "Adds a person who decides approvals for a tenant; returns their approver token once.",
  annotations: ADMIN,
  input: z.strictObject({
    name: z.string().min(1).max(64).describe("The person's name"),
    email: z.string().max(254).optional().describe("Their address, for the console"),
    tenantId: z.string().max(40).optional().describe("The tenant (default: yours, or default)"),
  }),
  output: ApproverView.extend({ token: z.string() }),
  run: async ({ approvers }, a) => ({ ...(await approvers.add({ name: a.name, ...(a.tenantId !== undefined ? { tenantId: a.tenantId } : {}), ...(a.email !== undefined ? { email: a.email } : {}) })) }),
});

export const listApprovers = defineAdminTool({
  name: "list_approvers",
  title: "List approvers",
  description: "Lists approvers (a tenant admin: its own tenant's), removed ones included.",
  annotations: ADMIN_READ,
  input: z.strictObject({ tenantId: z.string().max(40).optional().describe("Only this tenant's") }),
  output: z.object({ approvers: z.array(ApproverView) }),
  run: async ({ approvers }, a) => ({ approvers: await approvers.list(a.tenantId) }),
});

export const removeApprover = defineAdminTool({
  name: "remove_approver",
  title: "Remove approver",
  description: "Removes an approver: its token stops working; decisions it signed stay verifiable.",
  annotations: { ...ADMIN, destructiveHint: true, idempotentHint: true },
  input: z.strictObject({ id: z.string().max(40).describe("The approver id (apr_…)") }),
  output: z.object({ id: z.string(), removedAt: z.string() }),
  run: ({ approvers }, a) => approvers.remove(a.id),
});

export const listTenantApprovals = defineAdminTool({
  name: "list_approvals",
  title: "List approvals",
  description: "Lists approval requests (a tenant admin: its own tenant's) with status from the logs. Approvers decide them, not admins.",
  annotations: ADMIN_READ,
  input: z.strictObject({
    status: z.enum(APPROVAL_STATUSES).optional().describe("Only this status, e.g. pending"),
    tenantId: z.string().max(40).optional().describe("Only this tenant's"),
  }),
  output: z.object({ approvals: z.array(ApprovalViewSchema) }),
  run: async ({ approvals }, a) => ({ approvals: await approvals.list({ ...(a.tenantId !== undefined ? { tenantId: a.tenantId } : {}), ...(a.status !== undefined ? { status: a.status } : {}) }) }),
});
