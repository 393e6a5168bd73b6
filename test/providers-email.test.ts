import { createHash, createVerify, generateKeyPairSync, randomUUID } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { simpleParser, type AddressObject } from "mailparser";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  classifySmtpError,
  createEmailProvider,
  emailFrom,
  isPlainAddress,
  loadDkim,
} from "../src/providers/email.js";
import { parseConfig } from "../src/config.js";
import { writeOutboxFile } from "../src/providers/outbox.js";
import { ProviderError, type EmailMessage } from "../src/providers/types.js";
import { startSmtpServer, type TestSmtpServer } from "./support/smtp.js";

const FAST = 500;

let home: string;
let outboxDir: string;
const servers: TestSmtpServer[] = [];

beforeEach(async () => {
  home = await mkdtemp(path.join(tmpdir(), "sigil-email-"));
  outboxDir = path.join(home, "outbox");
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  await rm(home, { recursive: true, force: true });
});

async function smtp(...args: Parameters<typeof startSmtpServer>): Promise<TestSmtpServer> {
  const s = await startSmtpServer(...args);
  servers.push(s);
  return s;
}

function message(overrides: Partial<EmailMessage> = {}): EmailMessage {
  return {
    from: "agent-7@sigil.example",
    to: ["alice@example.com", "bob@example.com"],
    cc: ["carol@example.org"],
    subject: "Quarterly report",
    text: "Hello,\r\n.\r\nA line with a lone dot above.\r\n",
    html: "<p>Hello</p>",
    messageId: `<${randomUUID()}@sigil.local>`,
    date: new Date("2024-05-01T12:34:56.000Z"),
    extraHeaders: { "Sigil-Signature": "keyid=k1; sig=abc" },
    ...overrides,
  };
}

function addresses(a: AddressObject | AddressObject[] | undefined): string[] {
  if (!a) return [];
  return (Array.isArray(a) ? a : [a]).flatMap((o) => o.value.map((v) => v.address ?? ""));
}

async function expectProviderError(p: Promise<unknown>, kind: ProviderError["kind"]): Promise<ProviderError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProviderError);
  const pe = err as ProviderError;
  expect(pe.kind).toBe(kind);
  expect(pe.publicMessage).not.toMatch(/127\.0\.0\.1|localhost|\/tmp|at \w+ \(|pass/i);
  return pe;
}

/** Minimal DKIM (rsa-sha256, relaxed/relaxed) verifier, enough to prove the bytes are intact. */
function verifyDkim(raw: Buffer, publicKeyPem: string): { d: string; s: string } {
  const text = raw.toString("binary");
  const split = text.indexOf("\r\n\r\n");
  const headerBlock = text.slice(0, split);
  const body = text.slice(split + 4);
  const headers = headerBlock.split(/\r\n(?![ \t])/).map((line) => {
    const i = line.indexOf(":");
    return { name: line.slice(0, i), value: line.slice(i + 1), line };
  });
  const relaxHeader = (h: { name: string; value: string }) =>
    `${h.name.trim().toLowerCase()}:${h.value.replace(/\r\n/g, "").replace(/[ \t]+/g, " ").trim()}`;
  const sigHeader = headers.find((h) => h.name.toLowerCase() === "dkim-signature");
  if (!sigHeader) throw new Error("no DKIM-Signature");
  const tags = new Map(
    sigHeader.value.replace(/\r\n/g, "").split(";").map((t) => t.trim()).filter(Boolean).map((t) => {
      const i = t.indexOf("=");
      return [t.slice(0, i).trim(), t.slice(i + 1).replace(/[ \t]+/g, "")] as const;
    }),
  );
  expect(tags.get("a")).toBe("rsa-sha256");
  expect(tags.get("c")).toBe("relaxed/relaxed");
  let canonBody = body.split("\r\n").map((l) => l.replace(/[ \t]+/g, " ").replace(/ $/, "")).join("\r\n");
  canonBody = canonBody.replace(/(\r\n)*$/, "");
  canonBody = canonBody.length ? canonBody + "\r\n" : "";
  const bh = createHash("sha256").update(canonBody, "binary").digest("base64");
  expect(bh, "body hash").toBe(tags.get("bh"));
  const used = new Map<string, number>();
  const signed: string[] = [];
  for (const name of (tags.get("h") ?? "").split(":")) {
    const all = headers.filter((h) => h.name.trim().toLowerCase() === name.toLowerCase() && h !== sigHeader);
    const n = used.get(name.toLowerCase()) ?? 0;
    used.set(name.toLowerCase(), n + 1);
    const h = all[all.length - 1 - n];
    if (h) signed.push(relaxHeader(h) + "\r\n");
  }
  const sigValue = sigHeader.value.replace(/(\bb=)[^;]*/, "$1");
  const data = signed.join("") + relaxHeader({ name: sigHeader.name, value: sigValue });
  const ok = createVerify("RSA-SHA256").update(data, "binary").verify(publicKeyPem, tags.get("b") ?? "", "base64");
  expect(ok, "DKIM signature verifies").toBe(true);
  return { d: tags.get("d") ?? "", s: tags.get("s") ?? "" };
}

function rsaKeys() {
  return generateKeyPairSync("rsa", { modulusLength: 2048, privateKeyEncoding: { type: "pkcs8", format: "pem" }, publicKeyEncoding: { type: "spki", format: "pem" } });
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe("outbox writer", () => {
  it("creates the directory 0700 and files 0600, atomically, with no temp files left", async () => {
    const p = await writeOutboxFile(outboxDir, "2024-01-01T00-00-00.000Z-abcd.json", "{}");
    expect(((await stat(outboxDir)).mode & 0o777).toString(8)).toBe("700");
    expect(((await stat(p)).mode & 0o777).toString(8)).toBe("600");
    const names = await readdir(outboxDir);
    expect(names.filter((n) => !n.startsWith(".spare-"))).toEqual(["2024-01-01T00-00-00.000Z-abcd.json"]);
    // The only other file is this process's next spare: empty, 0600, created ahead of time.
    for (const spare of names.filter((n) => n.startsWith(".spare-"))) {
      expect(spare).toMatch(new RegExp(`^\\.spare-${process.pid}-[0-9a-f]{16}$`));
      const st = await stat(path.join(outboxDir, spare));
      expect([st.size, (st.mode & 0o777).toString(8)]).toEqual([0, "600"]);
    }
  });

  it("removes the empty spares of processes that no longer run, and a process leaves none behind when it exits", async () => {
    const { mkdir } = await import("node:fs/promises");
    const { spawnSync } = await import("node:child_process");
    await mkdir(outboxDir, { recursive: true, mode: 0o700 });
    const dead = ".spare-999999999-0123456789abcdef"; // no such pid
    await writeFile(path.join(outboxDir, dead), "");
    await writeOutboxFile(outboxDir, "2024-01-01T00-00-00.000Z-dead.json", "{}");
    expect(await readdir(outboxDir)).not.toContain(dead);
    const other = path.join(home, "other-outbox");
    const script = `import { writeOutboxFile } from ${JSON.stringify(path.resolve("dist/src/providers/outbox.js"))}; await writeOutboxFile(${JSON.stringify(other)}, "x.json", "{}");`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(await readdir(other)).toEqual(["x.json"]);
  });

  it("refuses names that could escape the directory", async () => {
    for (const bad of ["../x.eml", "a/b.eml", ".hidden", "..", "x\n.eml", ""]) {
      await expect(writeOutboxFile(outboxDir, bad, "x")).rejects.toThrow(/unsafe/);
    }
  });
});

describe("outbox email provider", () => {
  it("writes one .eml per message (0600 in a 0700 dir) that parses back exactly", async () => {
    const provider = createEmailProvider({ outboxDir });
    expect(provider.name).toBe("outbox");
    const msg = message();
    const res = await provider.send(msg);
    expect(res.providerId).toBe(msg.messageId);
    await provider.send(message());

    const files = (await readdir(outboxDir)).filter((f) => !f.startsWith(".")).sort();
    expect(files).toHaveLength(2);
    for (const f of files) {
      expect(f).toMatch(/^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}Z-[0-9a-f]{16}\.eml$/);
      expect(((await stat(path.join(outboxDir, f))).mode & 0o777).toString(8)).toBe("600");
    }
    expect(((await stat(outboxDir)).mode & 0o777).toString(8)).toBe("700");

    const raws = await Promise.all(files.map((f) => readFile(path.join(outboxDir, f))));
    const raw = raws.find((r) => r.equals(res.raw!));
    expect(raw, "the returned raw bytes are the file's bytes").toBeDefined();
    const parsed = await simpleParser(raw!);
    expect(addresses(parsed.from)).toEqual(["agent-7@sigil.example"]);
    expect(addresses(parsed.to)).toEqual(["alice@example.com", "bob@example.com"]);
    expect(addresses(parsed.cc)).toEqual(["carol@example.org"]);
    expect(parsed.bcc).toBeUndefined();
    expect(parsed.headers.has("bcc")).toBe(false);
    expect(parsed.subject).toBe("Quarterly report");
    expect(parsed.messageId).toBe(msg.messageId);
    expect(parsed.date?.toISOString()).toBe("2024-05-01T12:34:56.000Z");
    expect(parsed.text).toContain("A line with a lone dot above.");
    expect(parsed.html).toContain("<p>Hello</p>");
    expect(parsed.headers.get("sigil-signature")).toBe("keyid=k1; sig=abc");
    expect(parsed.attachments).toHaveLength(0);
    expect(parsed.headers.has("x-mailer")).toBe(false);
  });

  it("never reads local files or URLs named in the HTML", async () => {
    const secret = path.join(home, "secret.txt");
    await writeFile(secret, "TOP-SECRET-CONTENT");
    const provider = createEmailProvider({ outboxDir });
    const { raw } = await provider.send(message({ html: `<img src="file://${secret}"><img src="${secret}"><img src="http://127.0.0.1:1/x">` }));
    expect(raw!.toString()).not.toContain("TOP-SECRET-CONTENT");
    const parsed = await simpleParser(raw!);
    expect(parsed.attachments).toHaveLength(0);
  });

  it("a CR/LF in the subject does not inject headers", async () => {
    const provider = createEmailProvider({ outboxDir });
    const { raw } = await provider.send(message({ subject: "hi\r\nBcc: eve@evil.example\r\nX-Evil: 1" }));
    const parsed = await simpleParser(raw!);
    expect(parsed.headers.has("bcc")).toBe(false);
    expect(parsed.headers.has("x-evil")).toBe(false);
    expect(raw!.toString()).not.toMatch(/^Bcc:/im);
  });

  it("refuses hostile addresses and writes nothing", async () => {
    const provider = createEmailProvider({ outboxDir });
    const hostile = [
      '"a@ok.com" <x@evil.com>',
      "a@ok.com, x@evil.com",
      "a@ok.com;x@evil.com",
      "group: x@evil.com;",
      "a@ok.com\r\nx@evil.com",
      "a@ok.com\nBcc: x@evil.com",
      "<x@evil.com>",
      "a b@ok.com",
      "a@ok.com (comment)",
      "x@evil.com\u2028",
      "a\\@ok.com",
      "no-at-sign",
      "two@@ok.com",
      "a@b@ok.com",
      "@ok.com",
      "a@",
      "a@[127.0.0.1]",
    ];
    for (const addr of hostile) {
      expect(isPlainAddress(addr), addr).toBe(false);
      await expectProviderError(provider.send(message({ to: [addr] })), "rejected");
      await expectProviderError(provider.send(message({ cc: [addr] })), "rejected");
      await expectProviderError(provider.send(message({ from: addr })), "rejected");
    }
    await expectProviderError(provider.send(message({ to: [] })), "rejected");
    await expectProviderError(provider.send(message({ messageId: "<a@b>\r\nBcc: x@evil.com" })), "rejected");
    await expectProviderError(provider.send(message({ extraHeaders: { Bcc: "x@evil.com" } })), "rejected");
    await expectProviderError(provider.send(message({ extraHeaders: { "X-A": "v\r\nBcc: x@evil.com" } })), "rejected");
    await expect(readdir(outboxDir)).rejects.toThrow(); // never even created
    expect(isPlainAddress("Bob.Smith+tag@Sub.Example.co.uk")).toBe(true);
    expect(isPlainAddress("jörg@bücher.example")).toBe(true);
  });

  it("DKIM-signs when configured", async () => {
    const { privateKey, publicKey } = rsaKeys();
    const provider = createEmailProvider({ outboxDir, dkim: { domainName: "sigil.example", keySelector: "s2024", privateKey } });
    const { raw } = await provider.send(message());
    expect(verifyDkim(raw!, publicKey)).toEqual({ d: "sigil.example", s: "s2024" });
    const [file] = (await readdir(outboxDir)).filter((f) => !f.startsWith("."));
    expect(verifyDkim(await readFile(path.join(outboxDir, file!)), publicKey).d).toBe("sigil.example");
    // and a modified message does not verify
    const tampered = Buffer.from(raw!.toString("binary").replace("Quarterly report", "Quarterly rep0rt"), "binary");
    expect(() => verifyDkim(tampered, publicKey)).toThrow();
  });
});

describe("SMTP email provider", () => {
  it("delivers with an explicit envelope: MAIL FROM is the identity, RCPT TO exactly to+cc", async () => {
    const server = await smtp();
    const provider = createEmailProvider({ outboxDir, smtpUrl: server.url(), timeoutMs: FAST });
    expect(provider.name).toBe("smtp");
    const msg = message();
    const res = await provider.send(msg);
    expect(res.providerId).toBe(msg.messageId);
    expect(server.messages).toHaveLength(1);
    const got = server.messages[0]!;
    expect(got.mailFrom).toBe("agent-7@sigil.example");
    expect(got.rcptTo).toEqual(["alice@example.com", "bob@example.com", "carol@example.org"]);
    expect(got.secure).toBe(false); // STARTTLS not offered, not required
    expect(addresses(got.parsed.from)).toEqual(["agent-7@sigil.example"]);
    expect(addresses(got.parsed.to)).toEqual(["alice@example.com", "bob@example.com"]);
    expect(addresses(got.parsed.cc)).toEqual(["carol@example.org"]);
    expect(got.parsed.headers.has("bcc")).toBe(false);
    expect(got.parsed.subject).toBe("Quarterly report");
    expect(got.parsed.messageId).toBe(msg.messageId);
    expect(got.parsed.date?.toISOString()).toBe("2024-05-01T12:34:56.000Z");
    expect(got.parsed.headers.get("sigil-signature")).toBe("keyid=k1; sig=abc");
    expect(got.parsed.text).toContain("\n.\n"); // dot-stuffing round-trips
    expect(res.raw && got.raw.toString().trimEnd()).toBe(res.raw!.toString().trimEnd());
    expect(await readdir(outboxDir).catch(() => [])).toEqual([]); // SMTP mode never writes the outbox
  });

  it("works without PIPELINING too", async () => {
    const server = await smtp({ pipelining: false });
    const provider = createEmailProvider({ outboxDir, smtpUrl: server.url(), timeoutMs: FAST });
    await provider.send(message());
    expect(server.messages[0]?.rcptTo).toEqual(["alice@example.com", "bob@example.com", "carol@example.org"]);
  });

  it("authenticates with the URL's user:pass (and the server checks it)", async () => {
    const server = await smtp({ auth: { user: "mailer", pass: "s3cr:et@!" } });
    const good = createEmailProvider({ outboxDir, smtpUrl: server.url({ user: "mailer", pass: "s3cr:et@!" }), timeoutMs: FAST });
    await good.send(message());
    expect(server.messages).toHaveLength(1);
    expect(server.messages[0]?.user).toBe("mailer");
    expect(server.authAttempts).toEqual([{ user: "mailer", ok: true }]);

    const bad = createEmailProvider({ outboxDir, smtpUrl: server.url({ user: "mailer", pass: "wrong" }), timeoutMs: FAST });
    const err = await expectProviderError(bad.send(message()), "unavailable");
    expect(err.publicMessage).toMatch(/login/);
    expect(err.publicMessage).not.toContain("wrong");
    expect(server.messages).toHaveLength(1);

    const none = createEmailProvider({ outboxDir, smtpUrl: server.url(), timeoutMs: FAST });
    await expectProviderError(none.send(message()), "unavailable"); // 530 to MAIL FROM: auth required
    expect(server.messages).toHaveLength(1);
  });

  it("uses STARTTLS when the server offers it, and smtps:// for implicit TLS", async () => {
    const starttls = await smtp({ starttls: true });
    await createEmailProvider({ outboxDir, smtpUrl: starttls.url(), timeoutMs: 2000 }).send(message());
    expect(starttls.messages[0]?.secure).toBe(true);

    const smtps = await smtp({ secure: true });
    expect(smtps.url()).toMatch(/^smtps:/);
    await createEmailProvider({ outboxDir, smtpUrl: smtps.url(), timeoutMs: 2000 }).send(message());
    expect(smtps.messages[0]?.secure).toBe(true);

    // certificate checks stay on unless the URL turns them off
    const strict = createEmailProvider({ outboxDir, smtpUrl: `smtp://127.0.0.1:${starttls.port}`, timeoutMs: 2000 });
    await expectProviderError(strict.send(message()), "unavailable");
    expect(starttls.messages).toHaveLength(1);
  });

  it("DKIM-signs what it sends when configured", async () => {
    const { privateKey, publicKey } = rsaKeys();
    const server = await smtp();
    const provider = createEmailProvider({ outboxDir, smtpUrl: server.url(), timeoutMs: FAST, dkim: { domainName: "sigil.example", keySelector: "sel1", privateKey } });
    await provider.send(message());
    // verified on the bytes the server received
    expect(verifyDkim(server.messages[0]!.raw, publicKey)).toEqual({ d: "sigil.example", s: "sel1" });
  });

  it("refuses a hostile address before connecting: nothing reaches the server", async () => {
    const server = await smtp();
    const provider = createEmailProvider({ outboxDir, smtpUrl: server.url(), timeoutMs: FAST });
    await expectProviderError(provider.send(message({ to: ['"a@example.com" <x@evil.com>'] })), "rejected");
    await expectProviderError(provider.send(message({ cc: ["a@example.com\r\nRCPT TO:<x@evil.com>"] })), "rejected");
    await expectProviderError(provider.send(message({ to: ["a@example.com, x@evil.com"] })), "rejected");
    expect(server.connectionCount).toBe(0);
    expect(server.messages).toHaveLength(0);
  });

  it("550 to RCPT TO → rejected", async () => {
    const server = await smtp({ behaviour: { rejectRcpt: true } });
    const err = await expectProviderError(createEmailProvider({ outboxDir, smtpUrl: server.url(), timeoutMs: FAST }).send(message()), "rejected");
    expect(err.publicMessage).toBe("the mail server refused the message (550); nothing was sent");
    expect(server.messages).toHaveLength(0);
  });

  it("550 to only some recipients → unknown (sent to the others), never a plain success", async () => {
    const server = await smtp({ behaviour: { rejectRcpt: ["bob@example.com"] } });
    const err = await expectProviderError(createEmailProvider({ outboxDir, smtpUrl: server.url(), timeoutMs: FAST }).send(message()), "unknown");
    expect(err.publicMessage).toBe("the mail server refused 1 of 3 recipients (550); the message was sent to the others");
    expect(server.messages[0]?.rcptTo).toEqual(["alice@example.com", "carol@example.org"]);
  });

  it("550 to MAIL FROM → rejected", async () => {
    const server = await smtp({ behaviour: { rejectMailFrom: 550 } });
    await expectProviderError(createEmailProvider({ outboxDir, smtpUrl: server.url(), timeoutMs: FAST }).send(message()), "rejected");
  });

  it("550 at the end of DATA → rejected; 451 → unavailable", async () => {
    const server = await smtp({ behaviour: { rejectData: 550 } });
    const provider = createEmailProvider({ outboxDir, smtpUrl: server.url(), timeoutMs: FAST });
    await expectProviderError(provider.send(message()), "rejected");
    server.setBehaviour({ rejectData: 451 });
    const err = await expectProviderError(provider.send(message()), "unavailable");
    expect(err.publicMessage).toMatch(/451/);
  });

  it("connection refused → unavailable", async () => {
    const port = await freePort();
    const err = await expectProviderError(createEmailProvider({ outboxDir, smtpUrl: `smtp://127.0.0.1:${port}`, timeoutMs: FAST }).send(message()), "unavailable");
    expect(err.publicMessage).not.toContain(String(port));
  });

  it("DNS failure → unavailable", async () => {
    await expectProviderError(createEmailProvider({ outboxDir, smtpUrl: "smtp://no-such-host.invalid:25", timeoutMs: 2000 }).send(message()), "unavailable");
  });

  it("connection dropped before the greeting → unavailable", async () => {
    const server = await smtp({ behaviour: { dropOnConnect: true } });
    await expectProviderError(createEmailProvider({ outboxDir, smtpUrl: server.url(), timeoutMs: FAST }).send(message()), "unavailable");
  });

  it("no greeting → unavailable within the timeout", async () => {
    const server = await smtp({ behaviour: { stallGreeting: true } });
    const t0 = Date.now();
    await expectProviderError(createEmailProvider({ outboxDir, smtpUrl: server.url(), timeoutMs: FAST }).send(message()), "unavailable");
    expect(Date.now() - t0).toBeLessThan(30_000); // generous: the server never goes on, so only the timeout ends it
  });

  it("connection dropped at MAIL FROM, before any data → unavailable", async () => {
    const server = await smtp({ pipelining: false, behaviour: { dropOnMailFrom: true } });
    await expectProviderError(createEmailProvider({ outboxDir, smtpUrl: server.url(), timeoutMs: FAST }).send(message()), "unavailable");
  });

  it("connection dropped in the middle of DATA → unknown", async () => {
    const server = await smtp({ behaviour: { dropMidData: true } });
    const err = await expectProviderError(createEmailProvider({ outboxDir, smtpUrl: server.url(), timeoutMs: FAST }).send(message({ text: "x".repeat(200_000) })), "unknown");
    expect(err.publicMessage).toMatch(/may or may not/);
  });

  it("server stalls after the data → unknown within the timeout", async () => {
    const server = await smtp({ behaviour: { stallData: true } });
    const t0 = Date.now();
    const err = await expectProviderError(createEmailProvider({ outboxDir, smtpUrl: server.url(), timeoutMs: FAST }).send(message()), "unknown");
    expect(Date.now() - t0).toBeLessThan(30_000); // generous: the server never goes on, so only the timeout ends it
    expect(err.publicMessage).toMatch(/in time/);
    expect(server.messages).toHaveLength(1); // it did arrive: exactly why the outcome is "unknown"
  });

  it("refuses URLs that are not smtp:// or smtps://, without echoing them", () => {
    expect(() => createEmailProvider({ outboxDir, smtpUrl: "http://user:hunter2@host" })).toThrow(/smtp:\/\//);
    expect(() => createEmailProvider({ outboxDir, smtpUrl: "not a url hunter2" })).toThrow(/^(?!.*hunter2)/);
    expect(() => createEmailProvider({ outboxDir, smtpUrl: "smtp://h?sendmail=true" })).toThrow(/sendmail/);
  });
});

describe("SMTP error classification", () => {
  const before = { commandsSent: 3, dataCommandSent: false };
  const during = { commandsSent: 5, dataCommandSent: true };
  const err = (props: Record<string, unknown>) => Object.assign(new Error("x"), props);
  it("maps by reply code, error code and phase", () => {
    expect(classifySmtpError(err({ code: "EENVELOPE", responseCode: 550, command: "RCPT TO" }), before).kind).toBe("rejected");
    expect(classifySmtpError(err({ code: "EMESSAGE", responseCode: 554, command: "DATA" }), during).kind).toBe("rejected");
    expect(classifySmtpError(err({ code: "EPROTOCOL", responseCode: 554, command: "CONN" }), { commandsSent: 0, dataCommandSent: false }).kind).toBe("unavailable");
    expect(classifySmtpError(err({ code: "EENVELOPE", responseCode: 452, command: "RCPT TO" }), before).kind).toBe("unavailable");
    expect(classifySmtpError(err({ code: "ESOCKET", originalCode: "ECONNREFUSED", command: "CONN" }), { commandsSent: 0, dataCommandSent: false }).kind).toBe("unavailable");
    expect(classifySmtpError(err({ code: "ETIMEDOUT", timeoutType: "GREETING_TIMEOUT" }), { commandsSent: 0, dataCommandSent: false }).kind).toBe("unavailable");
    expect(classifySmtpError(err({ code: "ETIMEDOUT", timeoutType: "SOCKET_TIMEOUT" }), during).kind).toBe("unknown");
    expect(classifySmtpError(err({ code: "ECONNECTION" }), during).kind).toBe("unknown");
    expect(classifySmtpError(err({ code: "ECONNECTION" }), before).kind).toBe("unavailable");
    expect(classifySmtpError(err({ code: "EABORT" }), during).kind).toBe("unknown");
  });
});

describe("configuration (src/config.ts)", () => {
  const dkimOf = (env: Record<string, string>) => loadDkim(parseConfig(env).dkim);
  it("DKIM: all three variables or none; the key file must hold a PEM private key", async () => {
    expect(dkimOf({})).toBeUndefined();
    const { privateKey } = rsaKeys();
    const keyFile = path.join(home, "dkim.pem");
    await writeFile(keyFile, privateKey, { mode: 0o600 });
    expect(dkimOf({ SIGIL_DKIM_DOMAIN: "sigil.example", SIGIL_DKIM_SELECTOR: "s1", SIGIL_DKIM_PRIVATE_KEY_FILE: keyFile })).toEqual({ domainName: "sigil.example", keySelector: "s1", privateKey });
    expect(() => dkimOf({ SIGIL_DKIM_DOMAIN: "sigil.example" })).toThrow(/all of/);
    expect(() => dkimOf({ SIGIL_DKIM_DOMAIN: "sigil.example", SIGIL_DKIM_SELECTOR: "s1", SIGIL_DKIM_PRIVATE_KEY_FILE: path.join(home, "missing.pem") })).toThrow(/cannot be read/);
    const notKey = path.join(home, "not-a-key.pem");
    await writeFile(notKey, "hello");
    expect(() => dkimOf({ SIGIL_DKIM_DOMAIN: "sigil.example", SIGIL_DKIM_SELECTOR: "s1", SIGIL_DKIM_PRIVATE_KEY_FILE: notKey })).toThrow(/private key/);
  });

  it("emailFrom picks SMTP when SIGIL_SMTP_URL is set, else the outbox", () => {
    expect(emailFrom(parseConfig({}), outboxDir).name).toBe("outbox");
    expect(emailFrom(parseConfig({ SIGIL_SMTP_URL: "smtp://u:p@127.0.0.1:2525" }), outboxDir).name).toBe("smtp");
  });

  it("SIGIL_PROVIDER_TIMEOUT_MS", () => {
    expect(parseConfig({}).providerTimeoutMs).toBe(15000);
    expect(parseConfig({ SIGIL_PROVIDER_TIMEOUT_MS: "750" }).providerTimeoutMs).toBe(750);
    for (const bad of ["0", "-1", "1.5", "abc", "9999999"]) {
      expect(() => parseConfig({ SIGIL_PROVIDER_TIMEOUT_MS: bad })).toThrow(/SIGIL_PROVIDER_TIMEOUT_MS must be a whole number from 1 to 600000/);
    }
  });
});
