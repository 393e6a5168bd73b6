/**
 * send_email end to end: the built `sigil serve` over stdio, a real SMTP server on loopback
 * (envelope and headers parsed from what it received), the outbox, the audit log on disk.
 */
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { simpleParser, type AddressObject } from "mailparser";
import fc from "fast-check";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { cleanupHomes, makeHome, stdioClient, text, type Home, type Identity, hints } from "./support/home.js";
import { startSmtpServer, type TestSmtpServer } from "./support/smtp.js";
import { auditEntries, auditHasher, auditText, outboxFiles, toolEntries } from "./support/channels.js";

const servers: TestSmtpServer[] = [];
const closers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c().catch(() => undefined)));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
afterAll(cleanupHomes);

async function smtp(): Promise<TestSmtpServer> {
  const s = await startSmtpServer();
  servers.push(s);
  return s;
}

async function session(home: Home, who: Identity, env: NodeJS.ProcessEnv = {}) {
  const s = await stdioClient(home, who.token, { env });
  closers.push(() => s.client.close());
  return s;
}

const addrs = (a: AddressObject | AddressObject[] | undefined): string[] =>
  (Array.isArray(a) ? a : a ? [a] : []).flatMap((o) => o.value.map((v) => v.address ?? ""));

const POLICY = { allowedDomains: ["example.com"], maxRecipients: 5 };

describe("send_email delivers exactly what policy validated", () => {
  it("SMTP: From is the identity's address, the envelope is exactly the normalised to+cc, bodies only hashed in the audit", async () => {
    const server = await smtp();
    const home = makeHome();
    const a = home.createIdentity({ name: "mailer", channels: "email", policy: POLICY, email: "Agent.One@Example.com" });
    const { client } = await session(home, a, { SIGIL_SMTP_URL: server.url() });

    const subject = "Quarterly numbers — draft 7f3a";
    const body = "Hello Alice,\nthe numbers are attached inline: 42.\n-- agent";
    const html = "<p>Hello <b>Alice</b></p>";
    const r = await client.callTool({
      name: "send_email",
      arguments: { to: ["Alice@Example.com", "bob@Sub.Example.com"], cc: ["carol@example.com", "alice@example.com"], subject, text: body, html },
    });
    expect(r.isError, text(r)).toBeFalsy();
    const sc = r.structuredContent as any;
    expect(sc.messageId).toMatch(/^<[0-9a-f-]{36}@sigil\.local>$/);
    expect(sc).toMatchObject({ status: "accepted", from: "agent.one@example.com", to: ["alice@example.com", "bob@sub.example.com"], cc: ["carol@example.com"] });
    expect(sc.receipt).toMatchObject({ identityId: a.id });

    expect(server.messages).toHaveLength(1);
    const m = server.messages[0]!;
    expect(m.mailFrom).toBe("agent.one@example.com");
    expect([...m.rcptTo].sort()).toEqual(["alice@example.com", "bob@sub.example.com", "carol@example.com"]);
    expect(addrs(m.parsed.from)).toEqual(["agent.one@example.com"]);
    expect(addrs(m.parsed.to)).toEqual(["alice@example.com", "bob@sub.example.com"]);
    expect(addrs(m.parsed.cc)).toEqual(["carol@example.com"]);
    expect(m.parsed.bcc).toBeUndefined();
    expect(m.raw.toString("latin1")).not.toMatch(/^bcc:/im);
    expect(m.parsed.subject).toBe(subject);
    expect(m.parsed.messageId).toBe(sc.messageId);
    expect(m.parsed.text?.trim()).toBe(body);
    expect(m.parsed.html).toContain("<b>Alice</b>");
    expect(Math.abs(m.parsed.date!.getTime() - Date.now())).toBeLessThan(60_000);
    expect(m.parsed.attachments).toHaveLength(0);

    // The audit log: intent (hashed subject/bodies, plain recipients, policy version) then result.
    const hash = await auditHasher(home);
    const entries = toolEntries(home, a.id, "send_email");
    expect(entries.map((e) => [e.phase, e.decision])).toEqual([["intent", "allow"], ["result", "ok"]]);
    const [intent, result] = entries as [any, any];
    expect(intent.args).toEqual({
      to: ["Alice@Example.com", "bob@Sub.Example.com"],
      cc: ["carol@example.com", "alice@example.com"],
      subject: hash(subject),
      text: hash(body),
      html: hash(html),
    });
    expect(intent.policyVersion).toBe(1);
    expect(result.intent).toBe(intent.seq);
    expect(result.providerId).toBe(sc.messageId);
    expect(result.seq).toBe(sc.receipt.seq);
    expect(result.result).toEqual({ messageId: sc.messageId, status: "accepted", from: "agent.one@example.com", to: sc.to, cc: sc.cc });
    const raw = auditText(home, a.id);
    for (const secretish of [subject, "Quarterly", body, "numbers are attached", html, "Alice</b>"]) expect(raw).not.toContain(secretish);
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });

  it("outbox by default: one .eml under $SIGIL_HOME/outbox, nothing else", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: POLICY });
    const { client } = await session(home, a);
    const r = await client.callTool({ name: "send_email", arguments: { to: ["x@example.com"], subject: "hi", text: "outbox body" } });
    expect(r.isError, text(r)).toBeFalsy();
    expect((r.structuredContent as any).status).toBe("outbox");
    const files = outboxFiles(home, "eml");
    expect(files).toHaveLength(1);
    const parsed = await simpleParser(readFileSync(files[0]!));
    expect(addrs(parsed.from)).toEqual([`${a.id.replace("_", "-")}@agents.sigil.localhost`]);
    expect(addrs(parsed.to)).toEqual(["x@example.com"]);
    expect(parsed.messageId).toBe((r.structuredContent as any).messageId);
    expect(parsed.text?.trim()).toBe("outbox body");
    expect(outboxFiles(home, "json")).toHaveLength(0);
  });

  it("only identities with the email channel see send_email; its published schema is strict", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: POLICY });
    const b = home.createIdentity({ channels: "sms", policy: {} });
    const sa = await session(home, a);
    const tools = (await sa.client.listTools()).tools;
    const t = tools.find((x) => x.name === "send_email")!;
    expect(t).toBeDefined();
    expect(hints(t.annotations)).toMatchObject({ readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true });
    expect((t.inputSchema as any).additionalProperties).toBe(false);
    expect(Object.keys((t.inputSchema as any).properties).sort()).toEqual(["cc", "html", "idempotencyKey", "subject", "text", "to"]);
    expect(tools.map((x) => x.name)).not.toContain("send_sms");
    const sb = await session(home, b);
    expect((await sb.client.listTools()).tools.map((x) => x.name)).not.toContain("send_email");
    const r = await sb.client.callTool({ name: "send_email", arguments: { to: ["x@example.com"], subject: "s", text: "t" } });
    expect(text(r)).toMatch(/^denied: tool_not_available: /);
  });
});

describe("send_email refuses what nodemailer could reinterpret, and sends nothing", () => {
  // [recipient, expected reason]. Each is tried as the only "to", and (with a good "to") as a "cc".
  const evilDomain = ["x@evil.com", "domain_not_allowed"] as const;
  const HOSTILE: Array<readonly [string, string]> = [
    ['"a@example.com" <x@evil.com>', "invalid_recipient"],
    ["Alice <alice@example.com>", "invalid_recipient"],
    ["<x@evil.com>", "invalid_recipient"],
    ["<a@example.com>", "invalid_recipient"],
    ["a@example.com>", "invalid_recipient"],
    ["x@evil.com, a@example.com", "invalid_recipient"],
    ["a@example.com,x@evil.com", "invalid_recipient"],
    ["a@example.com, ", "invalid_recipient"],
    ["a@example.com;x@evil.com", "invalid_recipient"],
    ["a@example.com\r\nx@evil.com", "invalid_recipient"],
    ["a@example.com\nBcc: x@evil.com", "invalid_recipient"],
    ["a@example.com\r\n", "invalid_recipient"],
    ["a@example.com\tx@evil.com", "invalid_recipient"],
    ["a@example.com\u2028x@evil.com", "invalid_recipient"],
    ["a@example.com\u0085", "invalid_recipient"],
    ["a@example.com\u0000x@evil.com", "invalid_recipient"],
    ["team: x@evil.com, a@example.com;", "invalid_recipient"],
    ["undisclosed-recipients:;", "invalid_recipient"],
    ["x@evil.com (a@example.com)", "invalid_recipient"],
    ["a@example.com (comment)", "invalid_recipient"],
    ['"x@evil.com"@example.com', "invalid_recipient"],
    ['"a b"@example.com', "invalid_recipient"],
    ["a\\@evil.com@example.com", "invalid_recipient"],
    ["x%evil.com@example.com", "invalid_recipient"],
    ["evil.com!x@example.com", "invalid_recipient"],
    ["x@evil.com@example.com", "invalid_recipient"],
    ["=?utf-8?q?x=40evil.com?=@example.com", "invalid_recipient"],
    ["=?x?=@example.com", "invalid_recipient"],
    ["a@[127.0.0.1]", "invalid_recipient"],
    ["a@[IPv6:::1]", "invalid_recipient"],
    ["a@127.0.0.1", "invalid_recipient"],
    ["a@0x7f.1", "invalid_recipient"],
    ["a@localhost", "invalid_recipient"],
    ["a@example.com.", "invalid_recipient"],
    ["a@.example.com", "invalid_recipient"],
    ["a@example..com", "invalid_recipient"],
    ["a..b@example.com", "invalid_recipient"],
    [".a@example.com", "invalid_recipient"],
    ["a@", "invalid_recipient"],
    ["@example.com", "invalid_recipient"],
    ["example.com", "invalid_recipient"],
    ["mailto:a@example.com", "invalid_recipient"],
    [" a@example.com", "invalid_recipient"],
    ["a@example.com ", "invalid_recipient"],
    ["a@exa mple.com", "invalid_recipient"],
    ["a@example.com\u200b", "invalid_recipient"],
    ["a\u202e@example.com", "invalid_recipient"],
    ["a\ufeff@example.com", "invalid_recipient"],
    ["a@ex\u0430mple.com", "invalid_recipient"], // Cyrillic а
    ["a@xn--exmple-4nf.com", "invalid_recipient"], // its punycode
    ["a@\u0430\u0440\u0440\u04cf\u0435.com", "invalid_recipient"], // whole-script Cyrillic "apple"
    ["a@\uff45xample.com", "invalid_recipient"], // fullwidth e
    ["a@example\u3002com", "invalid_recipient"], // ideographic full stop
    ["a@e\u0301xample.com", "invalid_recipient"], // decomposed accent
    ["a@ex%61mple.com", "invalid_recipient"],
    ["a@example.com%0d%0abcc:x@evil.com", "invalid_recipient"],
    ["j\u00f6rg@example.com", "invalid_recipient"],
    ["a@evil-example.com", "domain_not_allowed"],
    ["a@example.com.evil.com", "domain_not_allowed"],
    ["a@notexample.com", "domain_not_allowed"],
    ["a@example.co", "domain_not_allowed"],
    ["a@example.com.co", "domain_not_allowed"],
    evilDomain,
    ["X@EVIL.COM", "domain_not_allowed"],
    ["a@" + "b".repeat(300) + ".com", "invalid_arguments"],
    ["", "invalid_arguments"],
  ];

  it(`a table of ${HOSTILE.length} hostile recipients: each refused with its reason, audited as denied, and the SMTP server never even connected`, async () => {
    const server = await smtp();
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: POLICY });
    const { client } = await session(home, a, { SIGIL_SMTP_URL: server.url() });
    const seen: string[] = [];
    for (const [rcpt, reason] of HOSTILE) {
      for (const args of [{ to: [rcpt] }, { to: ["ok@example.com"], cc: [rcpt] }, { to: ["ok@example.com", rcpt] }]) {
        const r = await client.callTool({ name: "send_email", arguments: { ...args, subject: "s", text: "t" } });
        expect(r.isError, JSON.stringify(rcpt)).toBe(true);
        expect(text(r), JSON.stringify(rcpt)).toMatch(new RegExp(`^denied: ${reason}: `));
        expect(text(r)).not.toMatch(/[\r\n\u0000\u2028]/);
        seen.push(reason);
      }
    }
    expect(server.connectionCount).toBe(0);
    expect(server.messages).toHaveLength(0);
    const entries = toolEntries(home, a.id, "send_email");
    expect(entries).toHaveLength(HOSTILE.length * 3);
    expect(entries.every((e) => e.phase === "call" && e.decision === "deny")).toBe(true);
    expect(entries.map((e) => e.reason)).toEqual(seen);
    expect(outboxFiles(home, "eml")).toHaveLength(0);
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });

  it('with allowedDomains ["*"] every syntactic trick is still refused', async () => {
    const server = await smtp();
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: { allowedDomains: ["*"] } });
    const { client } = await session(home, a, { SIGIL_SMTP_URL: server.url() });
    const syntactic = HOSTILE.filter(([, reason]) => reason !== "domain_not_allowed");
    for (const [rcpt, reason] of syntactic) {
      const r = await client.callTool({ name: "send_email", arguments: { to: ["ok@anything.org", rcpt], subject: "s", text: "t" } });
      expect(text(r), JSON.stringify(rcpt)).toMatch(new RegExp(`^denied: ${reason}: `));
    }
    expect(server.connectionCount).toBe(0);
    // …while a plain address in any domain goes out.
    const ok = await client.callTool({ name: "send_email", arguments: { to: ["x@evil.com"], subject: "s", text: "t" } });
    expect(ok.isError, text(ok)).toBeFalsy();
    expect(server.messages.map((m) => m.rcptTo)).toEqual([["x@evil.com"]]);
  });

  it("unknown arguments (bcc, attachments, headers, raw, from…) and non-text bodies are refused and audited", async () => {
    const server = await smtp();
    // An HTTP server on loopback: nothing sigil sends may make it fetch a URL.
    let fetched = 0;
    const web: Server = createServer((_q, s) => {
      fetched++;
      s.end("x");
    });
    await new Promise<void>((r) => web.listen(0, "127.0.0.1", r));
    closers.push(() => new Promise((r) => web.close(r)));
    const url = `http://127.0.0.1:${(web.address() as AddressInfo).port}/x.png`;
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: POLICY });
    const { client } = await session(home, a, { SIGIL_SMTP_URL: server.url() });
    const base = { to: ["ok@example.com"], subject: "s", text: "t" };
    const extras: Record<string, unknown> = {
      bcc: ["x@evil.com"],
      attachments: [{ path: "/etc/passwd" }],
      headers: { Bcc: "x@evil.com" },
      raw: "To: x@evil.com\r\n\r\nhi",
      from: "ceo@example.com",
      sender: "ceo@example.com",
      replyTo: "x@evil.com",
      envelope: { from: "a@example.com", to: ["x@evil.com"] },
      inReplyTo: "<a@b>",
      references: "<a@b>",
      alternatives: [{ path: url }],
      icalEvent: { path: "/etc/hosts" },
      amp: "<html/>",
      dkim: {},
      list: { unsubscribe: url },
      messageId: "<x@evil.com>",
      date: "2000-01-01",
      priority: "high",
      __proto__x: 1,
    };
    for (const [k, v] of Object.entries(extras)) {
      const r = await client.callTool({ name: "send_email", arguments: { ...base, [k]: v } });
      expect(text(r), k).toBe(`denied: invalid_arguments: unknown argument(s): ${k}.`);
    }
    const malformed: Array<Record<string, unknown>> = [
      { ...base, html: { path: "/etc/passwd" } },
      { ...base, text: { href: url } },
      { ...base, text: ["a"] },
      { ...base, to: "ok@example.com" },
      { ...base, to: [] },
      { ...base, to: [{ address: "x@evil.com", name: "" }] },
      { ...base, cc: "x@evil.com" },
      { ...base, subject: "hi\r\nBcc: x@evil.com" },
      { ...base, subject: "x".repeat(999) },
      { ...base, text: "x".repeat(100_001) },
      { ...base, text: "nul\u0000byte" },
      { ...base, to: Array.from({ length: 101 }, (_, i) => `u${i}@example.com`) },
      { ...base, idempotencyKey: "has space" },
      { ...base, idempotencyKey: "k".repeat(256) },
      { to: ["ok@example.com"], text: "no subject" },
    ];
    for (const args of malformed) {
      const r = await client.callTool({ name: "send_email", arguments: args });
      expect(text(r), JSON.stringify(args).slice(0, 80)).toMatch(/^denied: invalid_arguments: /);
    }
    // HTML referencing a URL is sent as written; sigil never fetches it.
    const ok = await client.callTool({ name: "send_email", arguments: { ...base, html: `<img src="${url}"><a href="file:///etc/passwd">x</a>` } });
    expect(ok.isError, text(ok)).toBeFalsy();
    expect(server.messages).toHaveLength(1);
    expect(server.messages[0]!.rcptTo).toEqual(["ok@example.com"]);
    expect(server.messages[0]!.parsed.attachments).toHaveLength(0);
    expect(server.messages[0]!.raw.toString()).not.toContain("root:");
    expect(fetched).toBe(0);
    const denied = toolEntries(home, a.id, "send_email").filter((e) => e.decision === "deny");
    expect(denied).toHaveLength(Object.keys(extras).length + malformed.length);
    expect(denied.every((e) => e.reason === "invalid_arguments" && Array.isArray(e.args?.keys))).toBe(true);
    expect(auditText(home, a.id)).not.toContain("/etc/passwd");
  });

  it("maxRecipients counts distinct addresses across to and cc; default 10; no allowedDomains means no email", async () => {
    const server = await smtp();
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: { allowedDomains: ["example.com"], maxRecipients: 3 } });
    const b = home.createIdentity({ channels: "email", policy: { allowedDomains: ["example.com"] } });
    const c = home.createIdentity({ channels: "email", policy: {} });
    const env = { SIGIL_SMTP_URL: server.url() };
    const sa = await session(home, a, env);
    const over = await sa.client.callTool({ name: "send_email", arguments: { to: ["a@example.com", "b@example.com"], cc: ["c@example.com", "d@example.com"], subject: "s" } });
    expect(text(over)).toMatch(/^denied: too_many_recipients: .*4 recipients; at most 3/);
    const dup = await sa.client.callTool({
      name: "send_email",
      arguments: { to: ["a@example.com", "A@EXAMPLE.COM", "b@example.com"], cc: ["a@example.com", "c@example.com", "B@example.com"], subject: "s" },
    });
    expect(dup.isError, text(dup)).toBeFalsy();
    expect(server.messages.at(-1)!.rcptTo.sort()).toEqual(["a@example.com", "b@example.com", "c@example.com"]);

    const sb = await session(home, b, env);
    const eleven = Array.from({ length: 11 }, (_, i) => `u${i}@example.com`);
    expect(text(await sb.client.callTool({ name: "send_email", arguments: { to: eleven, subject: "s" } }))).toMatch(/^denied: too_many_recipients: /);
    const ten = await sb.client.callTool({ name: "send_email", arguments: { to: eleven.slice(0, 10), subject: "s" } });
    expect(ten.isError, text(ten)).toBeFalsy();
    expect(server.messages.at(-1)!.rcptTo).toHaveLength(10);

    const sc = await session(home, c, env);
    expect(text(await sc.client.callTool({ name: "send_email", arguments: { to: ["a@example.com"], subject: "s" } }))).toMatch(/^denied: email_not_allowed: /);
    expect(server.messages).toHaveLength(2);
  });

  it("a secret read from the vault in this session cannot leave by email, in any field or trivial encoding", async () => {
    const server = await smtp();
    const home = makeHome();
    const a = home.createIdentity({ channels: "email,vault", policy: { ...POLICY, allowedSecrets: ["api/*"] } });
    const secret = "sk_live_7Hq2ZpX9wR4mN8bV";
    home.json(["secret", "put", a.id, "api/key"], { input: secret });
    const { client } = await session(home, a, { SIGIL_SMTP_URL: server.url() });
    const before = await client.callTool({ name: "send_email", arguments: { to: ["a@example.com"], subject: "s", text: `key ${secret}` } });
    expect(before.isError, "not read yet in this session").toBeFalsy();
    const got = await client.callTool({ name: "vault_get", arguments: { name: "api/key" } });
    expect(got.isError, text(got)).toBeFalsy();
    const b64 = Buffer.from(secret).toString("base64");
    for (const args of [
      { subject: `key ${secret}`, text: "t" },
      { subject: "s", text: `here: ${b64}` },
      { subject: "s", html: `<p>${Buffer.from(secret).toString("hex").toUpperCase()}</p>` },
    ]) {
      const r = await client.callTool({ name: "send_email", arguments: { to: ["a@example.com"], ...args } });
      expect(text(r)).toMatch(/^denied: secret_exfiltration: /);
    }
    // In a recipient address too (refused; see the known gap below for how it is recorded).
    const inCc = await client.callTool({ name: "send_email", arguments: { to: ["a@example.com"], cc: [`${secret}@example.com`], subject: "s", text: "t" } });
    expect(text(inCc)).toMatch(/^denied: secret_exfiltration: /);
    expect(server.messages).toHaveLength(1);
    const log = auditEntries(home, a.id).filter((e) => e.reason === "secret_exfiltration");
    expect(log).toHaveLength(4);
    expect(JSON.stringify(log.slice(0, 3))).not.toContain(secret);
  });

  // A guard refusal records only the argument names, so a secret smuggled into a recipient address
  // (which the log otherwise keeps in plain text) never reaches the audit log.
  it("a secret carried in a recipient address is not written to the audit log when refused", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "email,vault", policy: { ...POLICY, allowedSecrets: ["api/*"] } });
    const secret = "sk_live_Rc8Lq2WmZ4xN7pT1";
    home.json(["secret", "put", a.id, "api/key"], { input: secret });
    const { client } = await session(home, a);
    expect((await client.callTool({ name: "vault_get", arguments: { name: "api/key" } })).isError).toBeFalsy();
    const r = await client.callTool({ name: "send_email", arguments: { to: [`${secret}@example.com`], subject: "s", text: "t" } });
    expect(text(r)).toMatch(/^denied: secret_exfiltration: /);
    expect(auditText(home, a.id)).not.toContain(secret);
  });
});

describe("provider failures and idempotency", () => {
  it("a refusing server → provider_rejected, audited failed; an unreachable one → provider_unavailable; neither leaks details", async () => {
    const server = await smtp();
    server.setBehaviour({ rejectRcpt: true });
    const dead = await smtp();
    const deadUrl = dead.url();
    await dead.close();
    servers.splice(servers.indexOf(dead), 1);
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: POLICY });
    const s1 = await session(home, a, { SIGIL_SMTP_URL: server.url(), SIGIL_PROVIDER_TIMEOUT_MS: "2000" });
    const r = await s1.client.callTool({ name: "send_email", arguments: { to: ["a@example.com"], subject: "s", text: "t", idempotencyKey: "k-rej" } });
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/^error: provider_rejected: the mail server refused the message \(550\); nothing was sent \(ref_[0-9a-f]+\)\.$/);
    const s2 = await session(home, a, { SIGIL_SMTP_URL: deadUrl, SIGIL_PROVIDER_TIMEOUT_MS: "2000" });
    const u = await s2.client.callTool({ name: "send_email", arguments: { to: ["a@example.com"], subject: "s", text: "t" } });
    expect(text(u)).toMatch(/^error: provider_unavailable: .*nothing was sent/);
    for (const t of [text(r), text(u)]) expect(t).not.toMatch(/127\.0\.0\.1|:\d{4,5}\b|Error:|at \w+ \(/);
    const results = toolEntries(home, a.id, "send_email").filter((e) => e.phase === "result");
    expect(results.map((e) => [e.decision, e.reason])).toEqual([["failed", "provider_rejected"], ["failed", "provider_unavailable"]]);
    // A definite failure frees the idempotency key: the retry is sent.
    server.setBehaviour({});
    const again = await s1.client.callTool({ name: "send_email", arguments: { to: ["a@example.com"], subject: "s", text: "t", idempotencyKey: "k-rej" } });
    expect(again.isError, text(again)).toBeFalsy();
    expect(server.messages.map((m) => m.rcptTo)).toEqual([["a@example.com"]]);
    // The server refusing one recipient of two: it went to the other, so the outcome is "unknown", not ok and not failed.
    server.setBehaviour({ rejectRcpt: ["b@example.com"] });
    const partial = await s1.client.callTool({ name: "send_email", arguments: { to: ["a@example.com", "b@example.com"], subject: "s", text: "t" } });
    expect(text(partial)).toMatch(/^error: provider_unknown: the mail server refused 1 of 2 recipients \(550\); the message was sent to the others/);
    expect(server.messages.map((m) => m.rcptTo)).toEqual([["a@example.com"], ["a@example.com"]]);
    const last = toolEntries(home, a.id, "send_email").at(-1)!;
    expect([last.phase, last.decision, last.reason]).toEqual(["result", "unknown", "provider_unknown"]);
  });

  it("a timeout after the message left → provider_unknown, audited unknown, never retried (not even with its idempotencyKey)", async () => {
    const server = await smtp();
    server.setBehaviour({ stallData: true });
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: POLICY });
    const { client } = await session(home, a, { SIGIL_SMTP_URL: server.url(), SIGIL_PROVIDER_TIMEOUT_MS: "300" });
    const args = { to: ["a@example.com"], subject: "s", text: "t", idempotencyKey: "k-unknown" };
    const r = await client.callTool({ name: "send_email", arguments: args });
    expect(text(r)).toMatch(/^error: provider_unknown: .*may or may not have been delivered.*will not be retried/);
    expect(server.connectionCount).toBe(1);
    const again = await client.callTool({ name: "send_email", arguments: args });
    expect(text(again)).toMatch(/^denied: outcome_unknown: /);
    expect(server.connectionCount).toBe(1);
    const e = toolEntries(home, a.id, "send_email");
    expect(e.map((x) => [x.phase, x.decision, x.reason ?? null])).toEqual([
      ["intent", "allow", null],
      ["result", "unknown", "provider_unknown"],
      ["call", "deny", "outcome_unknown"],
    ]);
  });

  it("idempotencyKey: same arguments replay the first result (across processes) and send once; other arguments are refused", async () => {
    const server = await smtp();
    const home = makeHome();
    const a = home.createIdentity({ channels: "email", policy: POLICY });
    const env = { SIGIL_SMTP_URL: server.url() };
    const s1 = await session(home, a, env);
    const args = { to: ["a@example.com"], subject: "once", text: "only once", idempotencyKey: "order-1234" };
    const first = await s1.client.callTool({ name: "send_email", arguments: args });
    expect(first.isError, text(first)).toBeFalsy();
    const second = await s1.client.callTool({ name: "send_email", arguments: args });
    expect(second.isError, text(second)).toBeFalsy();
    expect(second.structuredContent).toEqual(first.structuredContent);
    const s2 = await session(home, a, env);
    const third = await s2.client.callTool({ name: "send_email", arguments: { ...args } });
    expect(third.structuredContent).toEqual(first.structuredContent);
    for (const changed of [{ text: "another body" }, { subject: "twice" }, { to: ["b@example.com"] }, { cc: ["c@example.com"] }]) {
      const r = await s2.client.callTool({ name: "send_email", arguments: { ...args, ...changed } });
      expect(text(r)).toMatch(/^denied: idempotency_conflict: /);
    }
    expect(server.messages).toHaveLength(1);
    // Concurrent duplicates from both processes still send once.
    const burst = { ...args, idempotencyKey: "order-5678" };
    const rs = await Promise.all([1, 2, 3].flatMap(() => [s1, s2].map((s) => s.client.callTool({ name: "send_email", arguments: burst }))));
    expect(rs.every((r) => !r.isError)).toBe(true);
    expect(new Set(rs.map((r) => (r.structuredContent as any).messageId)).size).toBe(1);
    expect(server.messages).toHaveLength(2);
    const decisions = toolEntries(home, a.id, "send_email").map((e) => e.decision);
    expect(decisions.filter((d) => d === "allow")).toHaveLength(2);
    expect(decisions.filter((d) => d === "replayed")).toHaveLength(7);
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });
});

describe("property: random recipient lists through the real stdio server", () => {
  let server: TestSmtpServer;
  let home: Home;
  let a: Identity;
  let client: Awaited<ReturnType<typeof stdioClient>>["client"];
  beforeAll(async () => {
    server = await startSmtpServer();
    home = makeHome();
    a = home.createIdentity({ channels: "email", policy: { allowedDomains: ["example.com", "partner.org"], maxRecipients: 4 } });
    ({ client } = await stdioClient(home, a.token, { env: { SIGIL_SMTP_URL: server.url() } }));
  });
  afterAll(async () => {
    await client?.close();
    await server?.close();
  });

  const local = fc.stringMatching(/^[a-z0-9]{1,8}(?:[._+-][a-z0-9]{1,6})?$/);
  const good = fc
    .tuple(local, fc.constantFrom("example.com", "EXAMPLE.com", "mail.example.com", "partner.org", "a.b.partner.org"))
    .map(([l, d]) => ({ kind: "good" as const, s: `${l}@${d}` }));
  const evil = fc.constantFrom("evil.com", "example.com.evil.com", "evil-example.com", "partner.org.evil.com", "exаmple.com", "xn--exmple-4nf.com", "[127.0.0.1]", "127.0.0.1");
  const bad = fc
    .tuple(local, evil, local, fc.constantFrom("example.com", "partner.org"))
    .chain(([l, e, l2, ok]) =>
      fc.constantFrom(
        `${l}@${e}`,
        `"${l2}@${ok}" <${l}@${e}>`,
        `${l2}@${ok}, ${l}@${e}`,
        `${l2}@${ok};${l}@${e}`,
        `${l2}@${ok}\r\n${l}@${e}`,
        `${l}@${e} (${l2}@${ok})`,
        `x: ${l}@${e}, ${l2}@${ok};`,
        `${l}%${e}@${ok}`,
        `${e}!${l}@${ok}`,
        `${l}@${e}@${ok}`,
        `"${l}@${e}"@${ok}`,
        `=?utf-8?q?${l}=40${e}?=@${ok}`,
        `${l2}@${ok}\u0000${l}@${e}`,
        `${l2}@${ok}.`,
      ),
    )
    .map((s) => ({ kind: "bad" as const, s }));
  // Arbitrary text glued around an allowed address: whatever it is, only the safety property applies.
  const noise = fc
    .tuple(fc.string({ maxLength: 6, unit: "binary" }), good, fc.string({ maxLength: 6, unit: "binary" }))
    .map(([p, g, q]) => ({ kind: "noise" as const, s: `${p}${g.s}${q}` }));
  const entry = fc.oneof({ arbitrary: good, weight: 5 }, { arbitrary: bad, weight: 2 }, { arbitrary: noise, weight: 2 });
  const ALLOWED_RCPT = /^[a-z0-9._+-]+@(?:[a-z0-9-]+\.)*(?:example\.com|partner\.org)$/;

  it("never delivers to a recipient outside allowedDomains, nor anything the list did not name; one bad entry refuses the message", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(entry, { minLength: 1, maxLength: 3 }), fc.array(entry, { maxLength: 3 }), async (to, cc) => {
        const before = server.messages.length;
        const r = await client.callTool({ name: "send_email", arguments: { to: to.map((x) => x.s), cc: cc.map((x) => x.s), subject: "p", text: "p" } });
        const delivered = server.messages.slice(before);
        const all = [...to, ...cc];
        const named = new Set(all.map((x) => x.s.toLowerCase()));
        for (const m of delivered) {
          for (const rcpt of m.rcptTo) {
            expect(rcpt).toMatch(ALLOWED_RCPT);
            expect(named.has(rcpt)).toBe(true);
          }
          expect(m.rcptTo.length).toBeLessThanOrEqual(4);
        }
        if (all.some((x) => x.kind === "bad")) {
          expect(r.isError).toBe(true);
          expect(delivered).toHaveLength(0);
        }
        if (all.every((x) => x.kind === "good")) {
          const distinct = new Set(all.map((x) => x.s.toLowerCase()));
          if (distinct.size <= 4) {
            expect(r.isError, text(r)).toBeFalsy();
            expect(delivered).toHaveLength(1);
            expect(new Set(delivered[0]!.rcptTo)).toEqual(distinct);
          } else {
            expect(text(r)).toMatch(/^denied: too_many_recipients: /);
          }
        }
        if (r.isError) expect(delivered).toHaveLength(0);
      }),
      { numRuns: 30 },
    );
    const entries = auditEntries(home, a.id).filter((e) => e.tool === "send_email");
    expect(entries.length).toBeGreaterThanOrEqual(30);
  });
});
