/**
 * Inbound mail (SPEC §12) through real boundaries: nodemailer sends to the SMTP listener of the
 * built `sigil serve --http` (SIGIL_INBOUND_SMTP_PORT), DNS for DKIM served through mailauth's
 * resolver hook; the agent reads with the SDK's MCP client over stdio. Both stores.
 */
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { backends, pgQuery } from "./support/backends.js";
import { type Home, cleanupHomes, makeHome, stdioClient, text } from "./support/home.js";
import { dkimKey, rejection, rejectionCode, sendMail, startInboundServer, writeDns } from "./support/inbound.js";

afterAll(cleanupHomes);

const T = 120_000;

/** Every file under `dir`, whatever it is. */
function allFiles(dir: string): string[] {
  const out: string[] = [];
  for (const n of readdirSync(dir)) {
    const p = path.join(dir, n);
    const st = statSync(p);
    if (st.isDirectory()) out.push(...allFiles(p));
    else if (st.isFile()) out.push(p);
  }
  return out;
}

/** Where `needle` appears in plaintext: files of the home, and (PostgreSQL) any row of sigil's tables. */
async function plaintextHits(home: Home, needle: string): Promise<string[]> {
  const hits = allFiles(home.dir).filter((f) => readFileSync(f).includes(Buffer.from(needle, "utf8")));
  if (home.store === "postgres") {
    const url = home.env.SIGIL_STORE_URL!;
    const tables = await pgQuery<{ t: string }>(url, "SELECT table_name AS t FROM information_schema.tables WHERE table_name LIKE 'sigil_%'");
    for (const { t } of tables) {
      const rows = await pgQuery<{ x: string | null }>(url, `SELECT string_agg(r::text, E'\\n') AS x FROM "${t}" r`);
      if (rows[0]?.x?.includes(needle)) hits.push(`table ${t}`);
    }
  }
  return hits;
}

async function call(client: any, name: string, args: Record<string, unknown> = {}): Promise<any> {
  return client.callTool({ name, arguments: args });
}

describe.each(backends)("inbound mail (%s store)", (backend) => {
  it(
    "stores mail for identity addresses only, records SPF/DKIM/DMARC, marks unvouched senders untrusted, and never keeps a body in the clear",
    async () => {
      const home = makeHome({}, { store: backend });
      const key = dkimKey();
      const dns = writeDns(home, { TXT: { "s1._domainkey.trusted.example": [[key.txt]] } });
      const agent = home.createIdentity({ channels: "email", email: "agent@inbox.test", policy: { allowedDomains: ["example.com"], allowedSenders: ["trusted.example"] } });
      const other = home.createIdentity({ name: "other", channels: "email", email: "other@inbox.test", policy: {} });
      const server = await startInboundServer(home, { SIGIL_TEST_DNS_FILE: dns });
      const canary = `CANARY${randomBytes(8).toString("hex")}`;
      const subjectCanary = `SUBJ${randomBytes(8).toString("hex")}`;
      try {
        // An address that is no identity's: 550 at RCPT time, nothing stored.
        expect(await rejection(sendMail(server.smtpPort, { from: "a@trusted.example", to: "nobody@inbox.test", subject: "x", text: canary }))).toEqual({ code: 550, command: "RCPT TO" });

        // DKIM-signed by the domain in allowedSenders: stored, authenticated, not untrusted.
        await sendMail(server.smtpPort, {
          from: "Boss <boss@trusted.example>",
          to: "agent@inbox.test",
          subject: `signed ${subjectCanary}`,
          text: `signed body ${canary}`,
          dkim: { domainName: "trusted.example", keySelector: "s1", privateKey: key.privateKey },
        });
        // The same From domain without a signature: anyone can write that header, so it is untrusted.
        await sendMail(server.smtpPort, { from: "boss@trusted.example", to: "agent@inbox.test", subject: "forged", text: `forged body ${canary}` });
        // A stranger, unsigned.
        await sendMail(server.smtpPort, { from: "Mallory <m@evil.example>", to: "agent@inbox.test", subject: "hello", html: `<p>html body ${canary}</p><script>alert(1)</script>` });

        const { client } = await stdioClient(home, agent.token);
        try {
          const listed = await call(client, "list_messages");
          expect(listed.isError).toBeFalsy();
          const msgs = listed.structuredContent.messages as any[];
          expect(msgs).toHaveLength(3);
          const byFrom = (f: string, s: string) => msgs.find((m) => m.from === f && m.subject.startsWith(s));
          const signed = byFrom("boss@trusted.example", "signed");
          const forged = byFrom("boss@trusted.example", "forged");
          const stranger = byFrom("m@evil.example", "hello");
          expect(signed.untrusted).toBe(false);
          expect(forged.untrusted).toBe(true);
          expect(stranger.untrusted).toBe(true);
          expect(msgs.every((m) => m.read === false && m.channel === "email")).toBe(true);

          const r1 = await call(client, "read_message", { id: signed.id });
          expect(r1.isError).toBeFalsy();
          expect(r1.structuredContent).toMatchObject({ from: "boss@trusted.example", fromName: "Boss", to: ["agent@inbox.test"], untrusted: false, read: true });
          expect(r1.structuredContent.text).toContain(`signed body ${canary}`);
          expect(r1.structuredContent.authentication).toMatchObject({ dkim: "pass", fromAuthenticated: true });

          const r2 = await call(client, "read_message", { id: forged.id });
          expect(r2.structuredContent.authentication).toMatchObject({ dkim: "none", fromAuthenticated: false });
          expect(r2.structuredContent.untrusted).toBe(true);

          // HTML reduced to text: the script is gone, the text is there.
          const r3 = await call(client, "read_message", { id: stranger.id });
          expect(r3.structuredContent.text).toContain(`html body ${canary}`);
          expect(r3.structuredContent.text).not.toMatch(/alert|<script|<p>/);
          expect(text(r3)).toMatch(/^UNTRUSTED email/);

          // Read state: unreadOnly now lists nothing.
          const unread = await call(client, "list_messages", { unreadOnly: true });
          expect(unread.structuredContent.messages).toEqual([]);
        } finally {
          await client.close();
        }

        // Another identity's session cannot see or read them.
        const o = await stdioClient(home, other.token);
        try {
          expect((await call(o.client, "list_messages")).structuredContent.messages).toEqual([]);
          const stolen = await call(o.client, "read_message", { id: (await pgOrFileIds(home, agent.id))[0] });
          expect(text(stolen)).toMatch(/^denied: message_not_found: /);
        } finally {
          await o.client.close();
        }

        // Receipts and reads are audited, with content as keyed hashes only.
        const log = home.auditLog(agent.id);
        const received = log.filter((e) => e.tool === "inbound_email" && e.decision === "received");
        expect(received).toHaveLength(3);
        for (const e of received) expect(e.args).toMatchObject({ channel: "email", from: expect.stringMatching(/^hmac-sha256:/), text: expect.stringMatching(/^hmac-sha256:/) });
        const reads = log.filter((e) => e.tool === "read_message" && e.phase === "result" && e.decision === "ok");
        expect(reads).toHaveLength(3);
        // A read's hash of the text matches its receipt's.
        const signedReceipt = received.find((e) => reads.some((r) => r.result.id === e.args.id && r.result.untrusted === false));
        expect(signedReceipt).toBeDefined();
        expect(reads.find((r) => r.result.id === signedReceipt.args.id).result.text).toBe(signedReceipt.args.text);

        // Canary: neither body nor subject appears in plaintext on disk, in the tables, the log or stderr.
        expect(await plaintextHits(home, canary)).toEqual([]);
        expect(await plaintextHits(home, subjectCanary)).toEqual([]);
        expect(server.output()).not.toContain(canary);
        expect(JSON.stringify(log)).not.toContain(canary);
      } finally {
        await server.stop();
      }
    },
    T,
  );

  it(
    "refuses a message over 10 MiB while it streams (552), and stores nothing",
    async () => {
      const home = makeHome({}, { store: backend });
      const agent = home.createIdentity({ channels: "email", email: "agent@inbox.test", policy: {} });
      const server = await startInboundServer(home);
      try {
        const big = "x".repeat(10 * 1024 * 1024 + 1024);
        expect(await rejectionCode(sendMail(server.smtpPort, { from: "a@b.example", to: "agent@inbox.test", subject: "big", text: big }))).toBe(552);
        expect(await pgOrFileIds(home, agent.id)).toEqual([]);
        // The listener still works afterwards.
        await sendMail(server.smtpPort, { from: "a@b.example", to: "agent@inbox.test", subject: "small", text: "ok" });
        expect(await pgOrFileIds(home, agent.id)).toHaveLength(1);
      } finally {
        await server.stop();
      }
    },
    T,
  );
});

/** The ids of an identity's stored messages, read from the store directly. */
async function pgOrFileIds(home: Home, identityId: string): Promise<string[]> {
  if (home.store === "postgres") {
    return (await pgQuery<{ id: string }>(home.env.SIGIL_STORE_URL!, "SELECT id FROM sigil_inbound WHERE identity_id = $1", [identityId])).map((r) => r.id);
  }
  try {
    return readdirSync(path.join(home.env.SIGIL_HOME!, "inbound", identityId)).filter((n) => n.endsWith(".json")).map((n) => n.slice(0, -5));
  } catch {
    return [];
  }
}
