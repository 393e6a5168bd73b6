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

describe("each check of the evidence reached, with its own sentence (issue 20)", () => {
  const k = generateSigningKey();
  const k2 = generateSigningKey();
  const check = (log: any[], usedAt = 10, keys?: ReadonlyMap<string, string>) => checkApprovalEvidence(log, APV, usedAt, keys);
  const failed = (detail: string) => ({ ok: false, detail, approvalId: APV, approvers: [] });

  it("no request, or a request at or after the entry that used it", () => {
    expect(check([decision(3, "apr_a", k)])).toEqual(failed(`the log holds no approval_requested entry for ${APV}`));
    expect(check([request, decision(3, "apr_a", k)], 2)).toEqual(failed(`approval ${APV} was requested after the entry that used it`));
    expect(check([request, decision(3, "apr_a", k)], 1)).toEqual(failed(`approval ${APV} was requested after the entry that used it`));
  });

  it("only this approval's approval_requested entry is its request", () => {
    const other = { ...request, seq: 1, approvalId: "apv_ffffffffffffffffffff", forTool: "send_email", actionHash: "hmac-sha256:zzz" };
    const naming = { seq: 1, tool: "approval_notified", approvalId: APV, forTool: "send_email" };
    for (const before of [other, naming]) expect(check([before, request, decision(3, "apr_a", k)])).toMatchObject({ ok: true });
  });

  it("only decisions on this approval, after its request and before its use, count", () => {
    const denial = (seq: number, over: object = {}) => ({ ...decision(seq, "apr_b", k2, { decision: "deny" }), decision: "denied", ...over });
    const good = decision(3, "apr_a", k);
    expect(check([denial(1), request, good], 4)).toMatchObject({ ok: true });
    expect(check([request, good, denial(4)], 4)).toMatchObject({ ok: true });
    expect(check([request, good, denial(3, { approvalId: "apv_ffffffffffffffffffff" })], 4)).toMatchObject({ ok: true });
    expect(check([request, { seq: 3, tool: "approval_notified", approvalId: APV, decision: "sent" }, decision(4, "apr_a", k)], 5)).toMatchObject({ ok: true });
    expect(check([request], 4)).toEqual(failed(`the log holds no decision on ${APV} before it was used`));
    expect(check([request, good], 3)).toEqual(failed(`the log holds no decision on ${APV} before it was used`));
  });

  it("any denial before the use fails it, even beside an approval", () => {
    const denial = { ...decision(4, "apr_b", k2, { decision: "deny" }), decision: "denied" };
    expect(check([request, decision(3, "apr_a", k), denial])).toEqual(failed(`approval ${APV} was denied before it was used`));
    expect(check([request, denial])).toEqual(failed(`approval ${APV} was denied before it was used`));
  });

  it("a decision without a statement, or with null, does not describe the approval (and is not thrown on)", () => {
    for (const statement of [undefined, null, "approve", 1]) {
      expect(check([request, { ...decision(3, "apr_a", k), statement }])).toEqual(failed(`the decision at seq 3 does not describe approval ${APV} as requested`));
    }
    const extra = decision(3, "apr_a", k);
    expect(check([request, { ...extra, statement: { ...extra.statement, note: "x" } }]).detail).toMatch(/does not describe/);
  });

  it("a signature that does not verify is named, and said to be under the published key when one was given", () => {
    const forged = { ...decision(3, "apr_a", k), approverSignature: decision(3, "apr_a", k2).approverSignature };
    expect(check([request, forged])).toEqual(failed(`approver apr_a's signature on approval ${APV} (seq 3) does not verify`));
    expect(check([request, decision(3, "apr_a", k)], 10, new Map([["apr_a", b64(k2.publicKey)]]))).toEqual(
      failed(`approver apr_a's signature on approval ${APV} (seq 3) does not verify under its published key`),
    );
    // Without a key in the entry or from the verifier, nothing verifies.
    expect(check([request, { ...decision(3, "apr_a", k), approverPublicKey: undefined }]).detail).toMatch(/does not verify$/);
    // Only a base64 string is a key: the key's bytes as a JSON array are not read as one.
    expect(check([request, { ...decision(3, "apr_a", k), approverPublicKey: [...k.publicKey] }]).detail).toMatch(/does not verify$/);
  });

  it("a decision recorded for another tenant than the request's fails", () => {
    expect(check([request, { ...decision(3, "apr_a", k), tenantId: "acme" }])).toEqual(failed("the decision at seq 3 names another tenant than the approval"));
  });

  it("quorum counts distinct approvers; a request without a numeric quorum needs one", () => {
    const q2 = { ...request, quorum: 2 };
    expect(check([q2, decision(3, "apr_a", k), decision(4, "apr_a", k)])).toEqual(failed(`approval ${APV} needed 2 distinct approvers`));
    const two = check([q2, decision(3, "apr_a", k), decision(4, "apr_b", k2)], 10, new Map([["apr_a", b64(k.publicKey)]]));
    expect(two).toEqual({
      ok: true,
      detail: "approved by apr_a, apr_b (key as the entry names it, not anchored) of tenant default, each signature verified",
      approvalId: APV,
      via: "approver",
      approvers: [
        { approverId: "apr_a", tenantId: "default", keyId: "k", anchored: true, via: "approver", seq: 3 },
        { approverId: "apr_b", tenantId: "default", keyId: "k", anchored: false, via: "approver", seq: 4 },
      ],
    });
    const { quorum: _q, ...noQuorum } = request;
    expect(check([noQuorum, decision(3, "apr_a", k)])).toMatchObject({ ok: true });
    expect(check([{ ...request, quorum: "2" }, decision(3, "apr_a", k)])).toMatchObject({ ok: true });
  });
});
