/**
 * Receipts a recipient can check with no sigil home: standalone audit-entry receipts (entry, keys,
 * signed checkpoint, Merkle inclusion proof) and the `Sigil-Signature` header of outgoing email,
 * checked from the .eml a recipient receives (outbox file and a real SMTP delivery).
 */
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { simpleParser } from "mailparser";
import { afterAll, describe, expect, it, vi } from "vitest";
import { generateKeyPairSync, sign as cryptoSign } from "node:crypto";
import { emailBodySha256, emailPartsSha256, emailSignedBytesV1, verifyEmailSignature } from "../src/provenance/email-signature.js";
import { jwkThumbprint, publicJwk } from "../src/crypto/jwk.js";
import { createEmailProvider } from "../src/providers/email.js";
import { keysFromJwks } from "../src/provenance/directory.js";
import { parseEml } from "../src/provenance/eml.js";
import { cleanupHomes, makeHome, startHttpServer, stdioClient, text, type Home } from "./support/home.js";
import { startSmtpServer } from "./support/smtp.js";
// Cases spawn servers and CLIs; under a loaded machine one took 118 s (alone: 13 s).
vi.setConfig({ testTimeout: 240_000 });

afterAll(cleanupHomes);

/** Runs the CLI where no home exists: what a recipient outside sigil has. */
function offline(home: Home, args: string[]) {
  return home.cli(args, { env: { SIGIL_HOME: path.join(home.dir, "no-home-here") } });
}

function write(home: Home, name: string, content: string): string {
  const f = path.join(home.dir, name);
  writeFileSync(f, content);
  return f;
}

describe("sigil receipt show / verify", () => {
  it("a receipt of a tool call verifies with no home against the published JWKS, is only `unanchored` (exit 3) against the keys it embeds, and exposes tampering", async () => {
    const home = makeHome();
    const a = home.createIdentity({ name: "buyer", channels: "sign", policy: { allowedSigningOrigins: ["https://shop.example"] } });
    const { client } = await stdioClient(home, a.token);
    const r = await client.callTool({ name: "sign_http_request", arguments: { method: "GET", url: "https://shop.example/x" } });
    expect(r.isError, text(r)).toBeFalsy();
    const seq = (r.structuredContent as any).receipt.seq as number;
    await client.close();
    home.json(["identity", "rotate-key", a.id]); // the checkpoint is now signed by a later key
    home.json(["identity", "rotate-token", a.id]);

    const doc = JSON.parse(home.cli(["receipt", "show", a.id, String(seq)]).stdout);
    expect(doc).toMatchObject({ format: "sigil-receipt/v1", identity: a.id, entry: { seq, tool: "sign_http_request", phase: "result" } });
    expect(doc.entry.hash).toBe((r.structuredContent as any).receipt.hash);
    expect(doc.checkpoint.size).toBe(seq + 4); // key_rotated's and token_rotated's intents and results
    const file = write(home, "receipt.json", JSON.stringify(doc));

    // Against only the keys it embeds, a receipt proves consistency, not origin: `unanchored`, exit 3.
    const unanchored = offline(home, ["receipt", "verify", file, "--json"]);
    expect(unanchored.code, unanchored.stderr).toBe(3);
    expect(JSON.parse(unanchored.stdout)).toMatchObject({ ok: false, verdict: "unanchored", anchored: false, identityId: a.id, seq, tool: "sign_http_request", decision: "ok", keyId: a.keyId, keysSource: "embedded" });
    expect(unanchored.stderr).toMatch(/unanchored/);
    const unanchoredText = offline(home, ["receipt", "verify", file]);
    expect(unanchoredText.code).toBe(3);
    expect(unanchoredText.stdout).toMatch(new RegExp(`^unanchored ${a.id}#${seq}: `));

    // Against the keys the HTTP server publishes (what a careful recipient uses).
    const server = await startHttpServer(home);
    let published: unknown;
    try {
      published = await (await fetch(`${new URL(server.url).origin}/identities/${a.id}/keys`)).json();
    } finally {
      await server.stop();
    }
    const keysFile = write(home, "keys.json", JSON.stringify(published));
    const anchored = offline(home, ["receipt", "verify", file, "--keys", keysFile, "--json"]);
    expect(anchored.code, anchored.stderr).toBe(0);
    expect(JSON.parse(anchored.stdout)).toMatchObject({ ok: true, verdict: "ok", anchored: true, keysSource: "supplied" });
    expect(offline(home, ["receipt", "verify", file, "--keys", keysFile]).stdout).toMatch(/^ok /);

    const fails = (mutated: unknown, extra: string[] = []) => {
      const res = offline(home, ["receipt", "verify", write(home, "bad.json", JSON.stringify(mutated)), "--json", ...extra]);
      expect(res.code).toBe(1);
      return JSON.parse(res.stdout).error as string;
    };
    expect(fails({ ...doc, entry: { ...doc.entry, decision: "deny" } })).toMatch(/does not match its hash/);
    expect(fails({ ...doc, entry: { ...doc.entry, sig: doc.entry.sig.replace(/^./, (c: string) => (c === "A" ? "B" : "A")) } })).toMatch(/signature does not verify/);
    const proof = [...doc.inclusion.proof];
    proof[0] = Buffer.alloc(32, 1).toString("base64");
    expect(fails({ ...doc, inclusion: { ...doc.inclusion, proof } })).toMatch(/not in the log/);
    expect(fails({ ...doc, inclusion: { ...doc.inclusion, leafIndex: 0 } })).toMatch(/not for this entry/);
    expect(fails({ ...doc, checkpoint: { ...doc.checkpoint, note: doc.checkpoint.note.replace(`\n${doc.checkpoint.size}\n`, `\n${doc.checkpoint.size + 1}\n`) } })).toMatch(/checkpoint does not verify/);
    // Keys valid at another time, or of another identity: refused.
    const shifted = { ...doc, keys: { ...doc.keys, keys: doc.keys.keys.map((k: any) => ({ ...k, nbf: k.nbf + 3600 })) } };
    expect(fails(shifted)).toMatch(/not valid at the entry's time/);
    const b = home.createIdentity({ name: "stranger", channels: "", policy: {} });
    expect(fails(doc, ["--keys", write(home, "bkeys.json", home.cli(["keys", "export", b.id]).stdout)])).toMatch(/keys are those of/);
    const anon = JSON.parse(home.cli(["keys", "export", b.id]).stdout);
    delete anon.identity;
    expect(fails(doc, ["--keys", write(home, "anon.json", JSON.stringify(anon))])).toMatch(/not among the identity's keys/);
  }, 60_000);

  it("the checkpoint inside a receipt lets its holder detect that the log was later truncated", () => {
    const home = makeHome();
    const a = home.createIdentity({ name: "kept", channels: "", policy: {} });
    home.json(["identity", "rotate-token", a.id]);
    home.json(["identity", "rotate-token", a.id]);
    const receipt = write(home, "r.json", home.cli(["receipt", "show", a.id, "3"]).stdout);
    expect(home.cli(["audit", "verify", "--checkpoint", receipt]).code).toBe(0);
    const log = path.join(home.env.SIGIL_HOME!, "audit", `${a.id}.jsonl`);
    writeFileSync(log, readFileSync(log, "utf8").trim().split("\n").slice(0, 2).join("\n") + "\n");
    const r = home.cli(["audit", "verify", "--checkpoint", receipt]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/truncated or rolled back/);
    expect(home.cli(["receipt", "show", a.id, "3"]).code).toBe(1); // there is no entry 3 any more
  });
});

describe("receipts of a revoked identity", () => {
  it("still verify: revocation stops the agent, not the log (its own entry is signed by the same key)", () => {
    const home = makeHome();
    const a = home.createIdentity({ name: "leaver", channels: "", policy: {} });
    home.json(["identity", "revoke", a.id]);
    const keys = JSON.parse(home.cli(["keys", "export", a.id]).stdout);
    expect(keys).toMatchObject({ identity: a.id, revokedAt: expect.any(String) });
    const receipt = write(home, "revoked.json", home.cli(["receipt", "show", a.id, "2"]).stdout);
    const r = offline(home, ["receipt", "verify", receipt, "--keys", write(home, "k.json", JSON.stringify(keys)), "--json"]);
    expect(r.code, r.stdout).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, tool: "identity_revoked" });
  });
});

describe("the Sigil-Signature header on outgoing email", () => {
  const POLICY = { allowedDomains: ["example.com"] };

  it("is on every message; verify-email checks it with the home, or offline with --keys; any change to what it covers fails", async () => {
    const home = makeHome();
    const a = home.createIdentity({ name: "mailer", channels: "email", policy: POLICY, email: "agent@sigil.example" });
    const { client } = await stdioClient(home, a.token);
    const body = "Grüße, Bob —\nyour order shipped.\n\n" + "a long line ".repeat(20) + "\n";
    const r = await client.callTool({
      name: "send_email",
      arguments: { to: ["bob@example.com", "Alice@Example.com"], cc: ["carol@example.com"], subject: "Order", text: body, html: "<p>Grüße</p>" },
    });
    expect(r.isError, text(r)).toBeFalsy();
    await client.close();
    const outbox = path.join(home.env.SIGIL_HOME!, "outbox");
    const eml = readdirSync(outbox).find((f) => f.endsWith(".eml"))!;
    const emlFile = path.join(outbox, eml);
    const raw = readFileSync(emlFile);
    expect(raw.toString("latin1")).toMatch(/^Sigil-Signature: v=2; id=/m);

    const withHome = home.cli(["receipt", "verify-email", emlFile, "--json"]);
    expect(withHome.code, withHome.stderr).toBe(0);
    expect(JSON.parse(withHome.stdout)).toMatchObject({
      ok: true,
      identityId: a.id,
      kid: a.keyId,
      keysSource: "home",
      from: "agent@sigil.example",
      messageId: (r.structuredContent as any).messageId,
    });

    const keysFile = write(home, "keys.json", home.cli(["keys", "export", a.id]).stdout);
    const off = offline(home, ["receipt", "verify-email", emlFile, "--keys", keysFile, "--json"]);
    expect(off.code, off.stderr).toBe(0);
    expect(JSON.parse(off.stdout)).toMatchObject({ ok: true, keysSource: "supplied" });

    // An independent MIME parser (mailparser) extracts the same fields, and they verify.
    const parsed = await simpleParser(raw);
    const boxes = (x: any) => (x ? (Array.isArray(x) ? x : [x]).flatMap((o: any) => o.value.map((v: any) => ({ name: v.name, address: v.address }))) : []);
    const independent = verifyEmailSignature(
      {
        from: boxes(parsed.from)[0],
        to: boxes(parsed.to),
        cc: boxes(parsed.cc),
        subject: parsed.subject ?? "",
        date: parsed.headers.get("date") instanceof Date ? (parsed.headers.get("date") as Date).toUTCString() : String(parsed.headers.get("date")),
        messageId: parsed.messageId!,
        bodySha256: emailPartsSha256([
          { type: "text/plain", content: parsed.text ?? "" },
          { type: "text/html", content: typeof parsed.html === "string" ? parsed.html : "" },
        ]),
        headerValue: String(parsed.headers.get("sigil-signature")),
      },
      keysFromJwks(JSON.parse(readFileSync(keysFile, "utf8"))),
    );
    expect(independent).toMatchObject({ ok: true, identityId: a.id });

    // Tampering with what the header covers: the whole table through the modules the CLI uses
    // (parseEml + verifyEmailSignature, in process: fast), a sample through the CLI itself.
    const pubKeys = keysFromJwks(JSON.parse(readFileSync(keysFile, "utf8")));
    const original = raw.toString("latin1");
    const check = (eml: string): string => {
      let p: ReturnType<typeof parseEml>;
      try {
        p = parseEml(eml);
      } catch (err) {
        return `the message cannot be read: ${(err as Error).message}`;
      }
      const results = p.headerValues.map((headerValue) => verifyEmailSignature({ ...p, headerValue }, pubKeys));
      if (results.length === 0) return "no Sigil-Signature header";
      return results.find((r) => r.ok) ? "ok" : (results.at(-1) as { error: string }).error;
    };
    expect(check(original)).toBe("ok");
    const tampered = (from: string | RegExp, to: string): string => {
      const changed = original.replace(from, to);
      expect(changed).not.toBe(original);
      return check(changed);
    };
    const viaCli = (from: string | RegExp, to: string): string => {
      const f = write(home, "t.eml", original.replace(from, to));
      const res = offline(home, ["receipt", "verify-email", f, "--keys", keysFile, "--json"]);
      expect(res.code).toBe(1);
      return JSON.parse(res.stdout).error as string;
    };
    expect(tampered(/^To: .*$/m, "To: bob@example.com, eve@example.com")).toBe("bad_signature");
    expect(tampered(/^Cc: .*$/m, "Cc: eve@example.com")).toBe("bad_signature");
    expect(tampered(/^Date: .*$/m, "Date: Mon, 01 Jan 2024 00:00:00 +0000")).toBe("bad_signature");
    expect(tampered(/^From: .*$/m, "From: boss@sigil.example")).toBe("bad_signature");
    expect(tampered(/^From: (.*)$/m, 'From: "PayPal Security" <$1>')).toBe("bad_signature");
    expect(tampered(/^From: (.*)$/m, "From: =?utf-8?q?Your_Bank?= <$1>")).toBe("bad_signature");
    expect(tampered(/^To: (.*)$/m, 'To: "Finance Team" <bob@example.com>, Alice@Example.com')).toBe("bad_signature");
    expect(tampered(/^Subject: .*$/m, "Subject: Urgent: wire the money today")).toBe("bad_signature");
    expect(tampered(/^Subject: .*\r\n/m, "")).toBe("bad_signature");
    expect(tampered(/^Sigil-Signature: .*$/m, "X-Nothing: 1")).toMatch(/no Sigil-Signature header/);
    // A second instance of any covered header fails, whichever one a reader would show.
    for (const h of ["From", "To", "Cc", "Subject", "Date", "Message-ID"]) {
      const line = new RegExp(`^${h}: .*\\r\\n`, "m").exec(original)![0];
      expect(tampered(line, line + line), h).toMatch(new RegExp(`cannot be read: it has 2 ${h} headers`));
      expect(tampered(line, line.replace(/: .*/, ": x@evil.example") + line), h).toMatch(/cannot be read: it has 2/);
    }
    // The HTML part replaced: in plain 7bit, or edited in the quoted-printable the composer wrote.
    const htmlPart = /Content-Type: text\/html[\s\S]*?\r\n\r\n[\s\S]*?(\r\n--)/;
    expect(tampered(htmlPart, "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n<p>Pay to IBAN XX00 now</p>\r\n$1")).toBe("body_hash_mismatch");
    expect(tampered("<p>Gr=C3=BC=C3=9Fe</p>", '<p>Gr=C3=BC=C3=9Fe <a href=3D"https://evil.example">log in</a></p>')).toBe("body_hash_mismatch");
    // The text part swapped for another one in plain 7bit.
    const textPart = /Content-Type: text\/plain[\s\S]*?\r\n\r\n[\s\S]*?(\r\n--)/;
    expect(tampered(textPart, "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\nyour order was cancelled.\r\n$1")).toBe("body_hash_mismatch");

    // The CLI on real tampered files: exit 1, the code with --json, one sentence for a person.
    expect(viaCli(/^Subject: .*$/m, "Subject: Invoice")).toBe("bad_signature");
    expect(viaCli(htmlPart, "Content-Type: text/html\r\n\r\n<p>Pay now</p>\r\n$1")).toBe("body_hash_mismatch");
    expect(viaCli(/^(Subject: .*\r\n)/m, "$1Subject: Invoice\r\n")).toMatch(/cannot be read: it has 2 Subject headers/);
    const human = offline(home, ["receipt", "verify-email", write(home, "s.eml", original.replace(/^Subject: .*$/m, "Subject: Invoice")), "--keys", keysFile]);
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/^FAIL .*: the signature does not match the message: .*the Subject.*\.\n$/);

    // Keys of another identity, and no keys at all where there is no home.
    const b = home.createIdentity({ name: "other", channels: "", policy: {} });
    const bKeys = write(home, "b.json", home.cli(["keys", "export", b.id]).stdout);
    expect(JSON.parse(offline(home, ["receipt", "verify-email", emlFile, "--keys", bKeys, "--json"]).stdout).error).toMatch(/keys are those of/);
    const none = offline(home, ["receipt", "verify-email", emlFile]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/--keys/);
  }, 120_000);

  it("a format v1 message (older sigil) is refused unless --accept-v1, which checks what v1 covered and says what it did not", async () => {
    const home = makeHome();
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const pub = new Uint8Array(Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url"));
    const kid = jwkThumbprint(pub);
    const date = new Date("2026-01-02T03:04:05Z");
    const text = "Your order shipped.\n";
    const v1 = { from: "agent@sigil.example", to: ["bob@example.com"], cc: [], date: date.toUTCString(), messageId: "<v1@sigil.local>", bodySha256: emailBodySha256(text) };
    const ts = Math.floor(date.getTime() / 1000);
    const sig = cryptoSign(null, emailSignedBytesV1(v1, { identityId: "id_legacy", kid, ts }), privateKey).toString("base64");
    const header = `v=1; id=id_legacy; kid=${kid}; ts=${ts}; h=from:to:cc:date:message-id; bh=${v1.bodySha256}; b=${sig}`;
    const sent = await createEmailProvider({ outboxDir: path.join(home.dir, "v1-outbox") }).send({
      from: v1.from, to: v1.to, cc: [], subject: "Order", text, messageId: v1.messageId, date, extraHeaders: { "Sigil-Signature": header },
    });
    const eml = write(home, "v1.eml", sent.raw.toString("latin1"));
    const keys = write(home, "v1-keys.json", JSON.stringify({ keys: [{ ...publicJwk(pub), kid }] }));
    const refused = offline(home, ["receipt", "verify-email", eml, "--keys", keys]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(/^FAIL .*: the Sigil-Signature header is format v1, which does not cover the Subject, display names or HTML part; .*--accept-v1/);
    const accepted = offline(home, ["receipt", "verify-email", eml, "--keys", keys, "--accept-v1", "--json"]);
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(JSON.parse(accepted.stdout)).toMatchObject({ ok: true, version: 1, identityId: "id_legacy", kid });
    // Even so, v1 still catches what it covered.
    const moved = write(home, "v1-moved.eml", sent.raw.toString("latin1").replace(/^To: .*$/m, "To: eve@example.com"));
    expect(offline(home, ["receipt", "verify-email", moved, "--keys", keys, "--accept-v1"]).code).toBe(1);
  }, 60_000);

  it("survives real SMTP delivery and key rotation: the received bytes verify against the published JWKS", async () => {
    const smtp = await startSmtpServer();
    try {
      const home = makeHome();
      const a = home.createIdentity({ name: "smtp", channels: "email", policy: POLICY });
      const rotated = home.json<{ keyId: string }>(["identity", "rotate-key", a.id]);
      const { client } = await stdioClient(home, a.token, { env: { SIGIL_SMTP_URL: smtp.url() } });
      const r = await client.callTool({ name: "send_email", arguments: { to: ["bob@example.com"], subject: "hi", text: "plain ascii\r\nbody" } });
      expect(r.isError, text(r)).toBeFalsy();
      await client.close();
      expect(smtp.messages).toHaveLength(1);
      const f = write(home, "rx.eml", smtp.messages[0]!.raw.toString("latin1"));
      const keysFile = write(home, "keys.json", home.cli(["keys", "export", a.id]).stdout);
      const res = offline(home, ["receipt", "verify-email", f, "--keys", keysFile, "--json"]);
      expect(res.code, res.stdout + res.stderr).toBe(0);
      expect(JSON.parse(res.stdout)).toMatchObject({ ok: true, kid: rotated.keyId }); // signed by the ACTIVE key

      // HTML-only mail through SMTP: signed over its HTML, so the received HTML cannot be replaced,
      // nor the Subject, nor a covered header added twice.
      const h = await stdioClient(home, a.token, { env: { SIGIL_SMTP_URL: smtp.url() } });
      const r2 = await h.client.callTool({ name: "send_email", arguments: { to: ["bob@example.com"], subject: "Your invoice", html: "<p>Invoice <b>42</b>: 10 EUR</p>" } });
      expect(r2.isError, text(r2)).toBeFalsy();
      await h.client.close();
      expect(smtp.messages).toHaveLength(2);
      const rx = smtp.messages[1]!.raw.toString("latin1");
      expect(rx).toMatch(/^Content-Type: text\/html/m);
      expect(rx).not.toMatch(/text\/plain/);
      const keys = keysFromJwks(JSON.parse(readFileSync(keysFile, "utf8")));
      const verdict = (eml: string) => {
        try {
          const p = parseEml(eml);
          return verifyEmailSignature({ ...p, headerValue: p.headerValues[0]! }, keys);
        } catch (err) {
          return { ok: false, error: (err as Error).message };
        }
      };
      expect(verdict(rx)).toMatchObject({ ok: true, kid: rotated.keyId, version: 2 });
      expect(verdict(rx.replace("Invoice <b>42</b>: 10 EUR", "Invoice <b>42</b>: 9000 EUR"))).toEqual({ ok: false, error: "body_hash_mismatch" });
      expect(verdict(rx.replace(/^Subject: .*$/m, "Subject: Final notice"))).toEqual({ ok: false, error: "bad_signature" });
      expect(verdict(rx.replace(/^(Date: .*\r\n)/m, "$1$1"))).toMatchObject({ ok: false, error: expect.stringMatching(/2 Date headers/) });
      const cli = offline(home, ["receipt", "verify-email", write(home, "rx2.eml", rx.replace("10 EUR", "90 EUR")), "--keys", keysFile]);
      expect(cli.code).toBe(1);
      expect(cli.stdout).toMatch(/the body \(a text or HTML part, or their number or order\) is not what was signed/);
    } finally {
      await smtp.close();
    }
  }, 60_000);
});
