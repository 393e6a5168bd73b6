import { createHash, generateKeyPairSync, sign as cryptoSign } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseEml } from "../src/provenance/eml.js";
import { createEmailProvider } from "../src/providers/email.js";
import {
  signEmail,
  verifyEmailSignature,
  canonicalEmailBody,
  composedParts,
  emailBodySha256,
  emailPartsSha256,
  emailSignedBytes,
  emailSignedBytesV1,
} from "../src/provenance/email-signature.js";
import { jwkThumbprint, verifyEd25519, type Signer } from "../src/crypto/jwk.js";
import { EMAIL, EMAIL_V2 } from "../src/provenance/domains.js";

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
const box = (address: string, name = "") => ({ name, address });
const fields = {
  from: box("Agent-7@Sigil.Example"),
  to: [box("bob@shop.example"), box("Alice@Shop.Example")],
  cc: [] as Array<{ name: string; address: string }>,
  subject: "Your order",
  date: "Tue, 20 Apr 2021 02:07:55 +0000",
  messageId: "<abc.123@sigil.example>",
  bodySha256: emailPartsSha256(composedParts({ text: body, html: "<p>Hello Bob</p>" })),
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

  it("hashes every part with its type, in order: an HTML-only message is signed over its HTML", () => {
    const text = { type: "text/plain", content: "hi" };
    const html = { type: "text/html", content: "<p>hi</p>" };
    const h = (...parts: Array<{ type: string; content: string; attachment?: boolean }>) => emailPartsSha256(parts);
    expect(h(text, html)).not.toBe(h(html, text));
    expect(h(text, html)).not.toBe(h(text));
    expect(h(html)).not.toBe(h({ type: "text/html", content: "<p>bye</p>" }));
    expect(h(html)).not.toBe(h({ type: "text/plain", content: "<p>hi</p>" }));
    expect(h(html)).not.toBe(h({ ...html, attachment: true }));
    expect(h(html)).not.toBe(h({ type: "text/plain", content: "" }));
    expect(composedParts({ html: "<b>x</b>" })).toEqual([{ type: "text/html", content: "<b>x</b>" }]);
    expect(composedParts({})).toEqual([{ type: "text/plain", content: "" }]);
  });
});

describe("signEmail / verifyEmailSignature", () => {
  const signer = randomSigner();
  const keys: Array<{ publicKey: Uint8Array; notBefore?: string; notAfter?: string }> = [
    { publicKey: signer.publicKey, notBefore: "2021-01-01T00:00:00Z" },
  ];

  it("round-trips and reports the identity, key and format", async () => {
    const header = await signEmail({ ...fields, identityId: "agent-7", signer, now });
    const kid = jwkThumbprint(signer.publicKey);
    expect(header).toMatch(
      new RegExp(`^v=2; id=agent-7; kid=${kid}; ts=1618884476; h=from:to:cc:subject:date:message-id; bh=${fields.bodySha256.replace(/[+/]/g, "\\$&")}; b=[A-Za-z0-9+/]{86}==$`),
    );
    expect(verifyEmailSignature({ ...fields, headerValue: header }, keys)).toEqual({ ok: true, identityId: "agent-7", kid, ts: 1618884476, version: 2 });
  });

  it("signs exactly the documented domain-separated bytes", async () => {
    const header = await signEmail({ ...fields, cc: [box("Carol@x.example", "  Carol \t C ")], identityId: "agent-7", signer, now });
    const kid = jwkThumbprint(signer.publicKey);
    const expected =
      EMAIL_V2 +
      [
        'from:["","agent-7@sigil.example"]',
        'to:[["","alice@shop.example"],["","bob@shop.example"]]',
        'cc:[["Carol C","carol@x.example"]]',
        'subject:"Your order"',
        "date:1618884475",
        "message-id:<abc.123@sigil.example>",
        `bh:${fields.bodySha256}`,
        "id:agent-7",
        `kid:${kid}`,
        "ts:1618884476",
      ].join("\n");
    const bytes = emailSignedBytes({ ...fields, cc: [box("carol@x.example", "Carol C")] }, { identityId: "agent-7", kid, ts: 1618884476 });
    expect(Buffer.from(bytes).toString()).toBe(expected);
    const b = header.split("b=")[1]!;
    expect(verifyEd25519(signer.publicKey, bytes, new Uint8Array(Buffer.from(b, "base64")))).toBe(true);
  });

  it("tolerates what transport does: folding, recipient order and case, date re-formatting, brackets, subject folding", async () => {
    const header = await signEmail({ ...fields, identityId: "agent-7", signer, now });
    const folded = header.replace("; bh=", ";\r\n bh=").replace(/b=(.{40})/, "b=$1\r\n ");
    const check = verifyEmailSignature(
      {
        ...fields,
        headerValue: folded,
        to: [box("ALICE@shop.example"), box("bob@shop.example"), box("bob@shop.example")],
        subject: "Your\r\n  order ",
        date: "Tue, 20 Apr 2021 04:07:55 +0200",
        messageId: "abc.123@sigil.example",
      },
      keys,
    );
    expect(check.ok).toBe(true);
  });

  it("fails when the sender, its display name, a recipient, the Subject, the body, the date or the Message-ID changed", async () => {
    const header = await signEmail({ ...fields, identityId: "agent-7", signer, now });
    const v = (over: Partial<typeof fields>) => verifyEmailSignature({ ...fields, ...over, headerValue: header }, keys);
    expect(v({ to: [box("bob@shop.example")] })).toEqual({ ok: false, error: "bad_signature" });
    expect(v({ to: [box("bob@shop.example"), box("alice@shop.example"), box("eve@evil.example")] }).ok).toBe(false);
    expect(v({ to: [box("bob@shop.example", "Your Bank"), box("alice@shop.example")] })).toEqual({ ok: false, error: "bad_signature" });
    expect(v({ cc: [box("eve@evil.example")] }).ok).toBe(false);
    expect(v({ subject: "Your order was cancelled" })).toEqual({ ok: false, error: "bad_signature" });
    expect(v({ subject: "" })).toEqual({ ok: false, error: "bad_signature" });
    expect(v({ bodySha256: emailPartsSha256(composedParts({ text: body, html: "<p>Pay here</p>" })) })).toEqual({ ok: false, error: "body_hash_mismatch" });
    expect(v({ bodySha256: emailPartsSha256(composedParts({ text: body })) })).toEqual({ ok: false, error: "body_hash_mismatch" });
    expect(v({ date: "Tue, 20 Apr 2021 02:07:56 +0000" })).toEqual({ ok: false, error: "bad_signature" });
    expect(v({ from: box("agent-8@sigil.example") }).ok).toBe(false);
    expect(v({ from: box("agent-7@sigil.example", "PayPal Security") })).toEqual({ ok: false, error: "bad_signature" });
    expect(v({ messageId: "<abc.124@sigil.example>" }).ok).toBe(false);
  });

  it("fails for a tampered header, another identity id, unknown keys and keys outside their window", async () => {
    const header = await signEmail({ ...fields, identityId: "agent-7", signer, now });
    const v = (headerValue: string, k = keys) => verifyEmailSignature({ ...fields, headerValue }, k);
    expect(v(header.replace("id=agent-7", "id=agent-8"))).toEqual({ ok: false, error: "bad_signature" });
    expect(v(header.replace("ts=1618884476", "ts=1618884477"))).toEqual({ ok: false, error: "bad_signature" });
    expect(v(header.replace("v=2", "v=3"))).toEqual({ ok: false, error: "unsupported_version" });
    expect(v(header.replace("h=from:to:cc:subject:date:message-id", "h=from:to:cc:date:message-id"))).toEqual({ ok: false, error: "unsupported_header_list" });
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

  it("refuses a format v1 header unless asked, and then checks only what v1 covered", async () => {
    const kid = jwkThumbprint(signer.publicKey);
    const v1 = { from: "agent-7@sigil.example", to: ["bob@shop.example"], cc: [], date: fields.date, messageId: fields.messageId, bodySha256: emailBodySha256(body) };
    const bytes = emailSignedBytesV1(v1, { identityId: "agent-7", kid, ts: 1618884476 });
    expect(Buffer.from(bytes).toString().startsWith(EMAIL)).toBe(true);
    const sig = Buffer.from(await signer.sign(bytes)).toString("base64");
    const header = `v=1; id=agent-7; kid=${kid}; ts=1618884476; h=from:to:cc:date:message-id; bh=${v1.bodySha256}; b=${sig}`;
    const parsed = { ...fields, subject: "anything at all", headerValue: header, v1 };
    expect(verifyEmailSignature(parsed, keys)).toEqual({ ok: false, error: "legacy_version" });
    expect(verifyEmailSignature(parsed, keys, { acceptV1: true })).toEqual({ ok: true, identityId: "agent-7", kid, ts: 1618884476, version: 1 });
    expect(verifyEmailSignature({ ...parsed, v1: { ...v1, to: ["eve@evil.example"] } }, keys, { acceptV1: true })).toEqual({ ok: false, error: "bad_signature" });
  });

  it("refuses to sign malformed fields", async () => {
    const s = (over: Record<string, unknown>) => signEmail({ ...fields, identityId: "agent-7", signer, now, ...over });
    await expect(s({ from: box("Agent <agent@sigil.example>") })).rejects.toThrow();
    await expect(s({ from: "agent@sigil.example" })).rejects.toThrow();
    await expect(s({ to: [box("a@b,c@d")] })).rejects.toThrow();
    await expect(s({ to: [], cc: [] })).rejects.toThrow();
    await expect(s({ date: "not a date" })).rejects.toThrow();
    await expect(s({ messageId: "<a b@c>" })).rejects.toThrow();
    await expect(s({ bodySha256: "abc" })).rejects.toThrow();
    await expect(s({ identityId: "agent; b=x" })).rejects.toThrow();
  });
});

describe("parseEml reads what sigil's mail composer writes", () => {
  const signer = randomSigner();
  const keys = [{ publicKey: signer.publicKey }];
  const bodies: Array<{ text?: string; html?: string }> = [
    { text: "plain\nbody\n" },
    { html: "<p>Grüße — only HTML</p>" },
    { text: "both", html: "<p>both</p>" },
    { text: "", html: "<p>empty text</p>" },
    { text: "" },
    {},
    { text: "x".repeat(2000) + "\n" + "é".repeat(300), html: "<p>" + "long ".repeat(400) + "</p>" },
  ];
  for (const b of bodies) {
    it(`signs and verifies ${JSON.stringify(Object.fromEntries(Object.entries(b).map(([k, v]) => [k, v.length])))}`, async () => {
      const dir = await mkdtemp(path.join(tmpdir(), "sigil-eml-"));
      try {
        const date = new Date("2026-01-02T03:04:05Z");
        const subject = "Grüße, a long subject that the composer folds " + "and encodes ".repeat(8);
        const headerValue = await signEmail({
          from: box("agent@sigil.example"),
          to: [box("bob@example.com")],
          cc: [box("carol@example.com")],
          subject,
          date: date.toUTCString(),
          messageId: "<m1@sigil.local>",
          bodySha256: emailPartsSha256(composedParts(b)),
          identityId: "id_0123456789abcdef0123",
          signer,
          now: date,
        });
        const provider = createEmailProvider({ outboxDir: dir });
        const sent = await provider.send({
          from: "agent@sigil.example",
          to: ["bob@example.com"],
          cc: ["carol@example.com"],
          subject,
          ...b,
          messageId: "<m1@sigil.local>",
          date,
          extraHeaders: { "Sigil-Signature": headerValue },
        });
        const parsed = parseEml(sent.raw.toString("latin1"));
        expect(parsed.subject).toBe(subject);
        expect(verifyEmailSignature({ ...parsed, headerValue: parsed.headerValues[0]! }, keys)).toMatchObject({ ok: true, version: 2 });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
