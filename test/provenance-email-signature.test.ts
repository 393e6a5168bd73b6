import { createHash, generateKeyPairSync, sign as cryptoSign } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  signEmail,
  verifyEmailSignature,
  canonicalEmailBody,
  emailBodySha256,
  emailSignedBytes,
} from "../src/provenance/email-signature.js";
import { jwkThumbprint, verifyEd25519, type Signer } from "../src/crypto/jwk.js";
import { EMAIL } from "../src/provenance/domains.js";

function randomSigner(): Signer {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const x = publicKey.export({ format: "jwk" }).x!;
  return {
    keyId: "k",
    publicKey: new Uint8Array(Buffer.from(x, "base64url")),
    sign: (m) => new Uint8Array(cryptoSign(null, m, privateKey)),
  };
}

const body = "Hello Bob,\n\nyour order shipped.\n\n\n";
const fields = {
  from: "Agent-7@Sigil.Example",
  to: ["bob@shop.example", "Alice@Shop.Example"],
  cc: [] as string[],
  date: "Tue, 20 Apr 2021 02:07:55 +0000",
  messageId: "<abc.123@sigil.example>",
  bodySha256: emailBodySha256(body),
};
const now = new Date("2021-04-20T02:07:56Z");

describe("canonical body", () => {
  it("uses CRLF line endings, strips trailing empty lines, ends in one CRLF", () => {
    expect(Buffer.from(canonicalEmailBody(body)).toString()).toBe("Hello Bob,\r\n\r\nyour order shipped.\r\n");
    expect(emailBodySha256("Hello Bob,\r\n\r\nyour order shipped.")).toBe(emailBodySha256(body));
    expect(emailBodySha256("Hello Bob,\r\rour order shipped.\r\n")).not.toBe(emailBodySha256(body));
    expect(canonicalEmailBody("\n\r\n")).toEqual(new Uint8Array(0));
    expect(emailBodySha256("")).toBe(createHash("sha256").update("").digest("base64"));
    expect(Buffer.from(canonicalEmailBody("  trailing space  \n")).toString()).toBe("  trailing space  \r\n");
    expect(emailBodySha256(new TextEncoder().encode("é\n"))).toBe(emailBodySha256("é"));
  });
});

describe("signEmail / verifyEmailSignature", () => {
  const signer = randomSigner();
  const keys: Array<{ publicKey: Uint8Array; notBefore?: string; notAfter?: string }> = [
    { publicKey: signer.publicKey, notBefore: "2021-01-01T00:00:00Z" },
  ];

  it("round-trips and reports the identity and key", async () => {
    const header = await signEmail({ ...fields, identityId: "agent-7", signer, now });
    const kid = jwkThumbprint(signer.publicKey);
    expect(header).toMatch(
      new RegExp(`^v=1; id=agent-7; kid=${kid}; ts=1618884476; h=from:to:cc:date:message-id; bh=${fields.bodySha256.replace(/[+/]/g, "\\$&")}; b=[A-Za-z0-9+/]{86}==$`),
    );
    expect(verifyEmailSignature({ ...fields, headerValue: header }, keys)).toEqual({ ok: true, identityId: "agent-7", kid, ts: 1618884476 });
  });

  it("signs exactly the documented domain-separated bytes", async () => {
    const header = await signEmail({ ...fields, identityId: "agent-7", signer, now });
    const kid = jwkThumbprint(signer.publicKey);
    const expected =
      EMAIL +
      [
        "from:agent-7@sigil.example",
        "to:alice@shop.example,bob@shop.example",
        "cc:",
        "date:1618884475",
        "message-id:<abc.123@sigil.example>",
        `bh:${fields.bodySha256}`,
        "id:agent-7",
        `kid:${kid}`,
        "ts:1618884476",
      ].join("\n");
    const bytes = emailSignedBytes(fields, { identityId: "agent-7", kid, ts: 1618884476 });
    expect(Buffer.from(bytes).toString()).toBe(expected);
    const b = header.split("b=")[1]!;
    expect(verifyEd25519(signer.publicKey, bytes, new Uint8Array(Buffer.from(b, "base64")))).toBe(true);
  });

  it("tolerates what transport does: folding, recipient order and case, date re-formatting, brackets", async () => {
    const header = await signEmail({ ...fields, identityId: "agent-7", signer, now });
    const folded = header.replace("; bh=", ";\r\n bh=").replace(/b=(.{40})/, "b=$1\r\n ");
    const check = verifyEmailSignature(
      {
        ...fields,
        headerValue: folded,
        to: ["ALICE@shop.example", "bob@shop.example", "bob@shop.example"],
        date: "Tue, 20 Apr 2021 04:07:55 +0200",
        messageId: "abc.123@sigil.example",
      },
      keys,
    );
    expect(check.ok).toBe(true);
  });

  it("fails when a recipient, the body, the date, the sender or the Message-ID changed", async () => {
    const header = await signEmail({ ...fields, identityId: "agent-7", signer, now });
    const v = (over: Partial<typeof fields>) => verifyEmailSignature({ ...fields, ...over, headerValue: header }, keys);
    expect(v({ to: ["bob@shop.example"] })).toEqual({ ok: false, error: "bad_signature" });
    expect(v({ to: ["bob@shop.example", "alice@shop.example", "eve@evil.example"] }).ok).toBe(false);
    expect(v({ cc: ["eve@evil.example"] }).ok).toBe(false);
    expect(v({ to: ["bob@shop.example"], cc: ["alice@shop.example"] }).ok).toBe(false);
    expect(v({ bodySha256: emailBodySha256("Hello Bob,\n\nyour order did not ship.\n") })).toEqual({ ok: false, error: "body_hash_mismatch" });
    expect(v({ date: "Tue, 20 Apr 2021 02:07:56 +0000" })).toEqual({ ok: false, error: "bad_signature" });
    expect(v({ from: "agent-8@sigil.example" }).ok).toBe(false);
    expect(v({ messageId: "<abc.124@sigil.example>" }).ok).toBe(false);
  });

  it("fails for a tampered header, another identity id, unknown keys and keys outside their window", async () => {
    const header = await signEmail({ ...fields, identityId: "agent-7", signer, now });
    const v = (headerValue: string, k = keys) => verifyEmailSignature({ ...fields, headerValue }, k);
    expect(v(header.replace("id=agent-7", "id=agent-8"))).toEqual({ ok: false, error: "bad_signature" });
    expect(v(header.replace("ts=1618884476", "ts=1618884477"))).toEqual({ ok: false, error: "bad_signature" });
    expect(v(header.replace("v=1", "v=2"))).toEqual({ ok: false, error: "unsupported_version" });
    expect(v(header.replace("h=from:to:cc:date:message-id", "h=from:to"))).toEqual({ ok: false, error: "unsupported_header_list" });
    expect(v(header.replace("; b=", "; x=1; b="))).toEqual({ ok: false, error: "malformed_header" });
    expect(v(`${header}; b=AAAA`)).toEqual({ ok: false, error: "malformed_header" });
    expect(v("garbage")).toEqual({ ok: false, error: "malformed_header" });
    expect(v(header, [{ publicKey: randomSigner().publicKey }])).toEqual({ ok: false, error: "unknown_key" });
    expect(v(header, [{ publicKey: signer.publicKey, notBefore: "2021-05-01T00:00:00Z" }])).toEqual({
      ok: false,
      error: "key_not_valid_at_signing_time",
    });
    expect(v(header, [{ publicKey: signer.publicKey, notAfter: "2021-04-20T02:07:00Z" }])).toEqual({
      ok: false,
      error: "key_not_valid_at_signing_time",
    });
    // a retired key still verifies what it signed while it was valid
    expect(v(header, [{ publicKey: signer.publicKey, notBefore: "2021-01-01T00:00:00Z", notAfter: "2021-05-01T00:00:00Z" }]).ok).toBe(true);
  });

  it("refuses to sign malformed fields", async () => {
    const s = (over: Record<string, unknown>) => signEmail({ ...fields, identityId: "agent-7", signer, now, ...over });
    await expect(s({ from: "Agent <agent@sigil.example>" })).rejects.toThrow();
    await expect(s({ to: ["a@b,c@d"] })).rejects.toThrow();
    await expect(s({ to: [], cc: [] })).rejects.toThrow();
    await expect(s({ date: "not a date" })).rejects.toThrow();
    await expect(s({ messageId: "<a b@c>" })).rejects.toThrow();
    await expect(s({ bodySha256: "abc" })).rejects.toThrow();
    await expect(s({ identityId: "agent; b=x" })).rejects.toThrow();
  });
});
