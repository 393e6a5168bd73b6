/**
 * Checking an approval from an identity's log alone (for `sigil receipt explain`; README:
 * "Approvals"): the `approval_requested` entry, the `approval_decided` entries after it, and the
 * entry that used the approval. Each approver decision must carry a statement that describes this
 * approval exactly (identity, tenant, tool, action hash, policy version, expiry) and an Ed25519
 * signature by the approver's key over it; `keys` (approver id → public key, from the home's
 * approver records or another source the verifier trusts) anchors those keys — without it a
 * signature proves consistency with the key the entry names, not whose key that is.
 */
import type { AuditEntry } from "../audit/entry.js";
import { type DecisionStatement, verifyDecision } from "./approvals.js";

export interface ApprovalEvidence {
  ok: boolean;
  /** One sentence: what was checked, or what failed. */
  detail: string;
  approvalId: string;
  /** How it was approved: by named approvers, or client-attested. */
  via?: "approver" | "client-attested";
  approvers: Array<{ approverId: string; tenantId: string; keyId: string; anchored: boolean }>;
}

export function checkApprovalEvidence(entries: readonly AuditEntry[], approvalId: string, usedAtSeq: number, keys?: ReadonlyMap<string, string>): ApprovalEvidence {
  const fail = (detail: string): ApprovalEvidence => ({ ok: false, detail, approvalId, approvers: [] });
  const req = entries.find((e) => e.tool === "approval_requested" && e.approvalId === approvalId);
  if (!req) return fail(`the log holds no approval_requested entry for ${approvalId}`);
  if (req.seq >= usedAtSeq) return fail(`approval ${approvalId} was requested after the entry that used it`);
  const r = req as Record<string, unknown>;
  const decisions = entries.filter((e) => e.tool === "approval_decided" && e.approvalId === approvalId && e.seq > req.seq && e.seq < usedAtSeq);
  if (decisions.length === 0) return fail(`the log holds no decision on ${approvalId} before it was used`);
  if (decisions.some((d) => d.decision !== "approved")) return fail(`approval ${approvalId} was denied before it was used`);
  const client = decisions.find((d) => d.via === "client-attested");
  if (client) {
    return { ok: true, detail: "client-attested: the connected MCP client's form answer approved it (no named approver; it proves no human)", approvalId, via: "client-attested", approvers: [] };
  }
  const approvers: ApprovalEvidence["approvers"] = [];
  for (const d of decisions) {
    const s = d.statement as DecisionStatement | undefined;
    const expected: DecisionStatement = {
      approvalId,
      identityId: req.identity,
      tenantId: String(r.tenantId),
      tool: String(r.forTool),
      actionHash: String(r.actionHash),
      policyVersion: Number(r.policyVersion),
      expiresAt: String(r.expiresAt),
      approverId: String(d.approverId),
      decision: "approve",
    };
    if (!s || typeof s !== "object" || JSON.stringify(Object.entries(s).sort()) !== JSON.stringify(Object.entries(expected).sort())) {
      return fail(`the decision at seq ${d.seq} does not describe approval ${approvalId} as requested`);
    }
    const anchoredKey = keys?.get(expected.approverId);
    const publicKey = anchoredKey ?? (typeof d.approverPublicKey === "string" ? d.approverPublicKey : "");
    if (!verifyDecision(s, publicKey, String(d.approverSignature))) {
      return fail(`approver ${expected.approverId}'s signature on approval ${approvalId} (seq ${d.seq}) does not verify${anchoredKey ? " under its published key" : ""}`);
    }
    if (d.tenantId !== r.tenantId) return fail(`the decision at seq ${d.seq} names another tenant than the approval`);
    approvers.push({ approverId: expected.approverId, tenantId: expected.tenantId, keyId: String(d.approverKeyId), anchored: anchoredKey !== undefined });
  }
  const quorum = typeof r.quorum === "number" ? r.quorum : 1;
  if (new Set(approvers.map((a) => a.approverId)).size < quorum) return fail(`approval ${approvalId} needed ${quorum} distinct approvers`);
  const names = approvers.map((a) => `${a.approverId}${a.anchored ? "" : " (key as the entry names it, not anchored)"}`).join(", ");
  return { ok: true, detail: `approved by ${names} of tenant ${String(r.tenantId)}, each signature verified`, approvalId, via: "approver", approvers };
}
