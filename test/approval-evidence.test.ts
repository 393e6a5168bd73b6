/**
 * Checking an approval from the log alone (src/approval/evidence.ts, used by `sigil receipt
 * explain`): the approver's signature over the statement, the statement against the request,
 * quorum, and what is anchored. Pure module, in process, with real Ed25519 keys.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { b64 } from "../src/crypto/encoding.js";
import { cryptoReady } from "../src/crypto/sodium.js";
import { generateSigningKey, sign } from "../src/crypto/ed25519.js";
import { type DecisionStatement, decisionBytes } from "../src/approval/approvals.js";
import { checkApprovalEvidence } from "../src/approval/evidence.js";

beforeAll(cryptoReady);

const APV = "apv_0123456789abcdef0123";
const request = { seq: 2, identity: "id_0123456789abcdef0123", tool: "approval_requested", approvalId: APV, forTool: "card_charge", actionHash: "hmac-sha256:abc", policyVersion: 1, tenantId: "default", expiresAt: "2026-01-01T00:05:00.000Z", quorum: 1 } as any;

function decision(seq: number, approverId: string, key: ReturnType<typeof generateSigningKey>, over: Partial<DecisionStatement> = {}, sigOver?: DecisionStatement): any {
  const statement: DecisionStatement = { approvalId: APV, identityId: request.identity, tenantId: "default", tool: "card_charge", actionHash: request.actionHash, policyVersion: 1, expiresAt: request.expiresAt, approverId, decision: "approve", ...over };
  return { seq, tool: "approval_decided", approvalId: APV, decision: "approved", approverId, tenantId: "default", via: "approver", statement, approverKeyId: "k", approverPublicKey: b64(key.publicKey), approverSignature: b64(sign(key.secretKey, decisionBytes(sigOver ?? statement))) };
}

describe("approval evidence from the log", () => {
  it("a signed decision that describes the request verifies; anchored when the verifier supplies the approver's key", () => {
    const k = generateSigningKey();
    const log = [request, decision(3, "apr_a", k)];
    const loose = checkApprovalEvidence(log, APV, 4);
    expect(loose).toMatchObject({ ok: true, via: "approver", approvers: [{ approverId: "apr_a", anchored: false }] });
    const anchored = checkApprovalEvidence(log, APV, 4, new Map([["apr_a", b64(k.publicKey)]]));
    expect(anchored).toMatchObject({ ok: true, approvers: [{ approverId: "apr_a", anchored: true }] });
  });

  it("refuses a forged or altered decision, another key, a statement for another action, a missing quorum, and a decision after use", () => {
    const k = generateSigningKey();
    const other = generateSigningKey();
    const good = decision(3, "apr_a", k);
    expect(checkApprovalEvidence([request, { ...good, approverSignature: b64(sign(other.secretKey, decisionBytes(good.statement))) }], APV, 4).ok).toBe(false);
    expect(checkApprovalEvidence([request, good], APV, 4, new Map([["apr_a", b64(other.publicKey)]])).ok).toBe(false);
    expect(checkApprovalEvidence([request, decision(3, "apr_a", k, { actionHash: "hmac-sha256:other" })], APV, 4).detail).toMatch(/does not describe/);
    const deny = decision(3, "apr_a", k, { decision: "deny" });
    expect(checkApprovalEvidence([request, { ...deny, statement: { ...deny.statement, decision: "approve" } }], APV, 4).ok).toBe(false);
    expect(checkApprovalEvidence([{ ...request, quorum: 2 }, good], APV, 4).detail).toMatch(/needed 2 distinct approvers/);
    expect(checkApprovalEvidence([request, good], APV, 3).ok).toBe(false);
    expect(checkApprovalEvidence([good], APV, 4).ok).toBe(false);
  });

  it("a client-attested approval is reported as such, never as an approver's", () => {
    const r = checkApprovalEvidence([request, { seq: 3, tool: "approval_decided", approvalId: APV, decision: "approved", tenantId: "default", via: "client-attested" } as any], APV, 4);
    expect(r).toMatchObject({ ok: true, via: "client-attested", approvers: [] });
    expect(r.detail).toMatch(/proves no human/);
  });
});
