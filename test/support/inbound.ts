/**
 * Helpers for the inbound tests (test/inbound*.test.ts): a `sigil serve --http` with the SMTP
 * listener on a free port, DNS answers for SPF/DKIM/DMARC served through mailauth's resolver hook
 * (SIGIL_TEST_DNS_FILE), a DKIM key whose public half those answers publish, and nodemailer
 * sending to the listener.
 */
import { generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import path from "node:path";
import nodemailer from "nodemailer";
import { type Home, type HttpServer, startHttpServer } from "./home.js";

export interface InboundServer extends HttpServer {
  smtpPort: number;
}

/** DNS answers by type and name, as the file SIGIL_TEST_DNS_FILE names holds them. */
export type DnsTable = Record<string, Record<string, string[][] | string[]>>;

export function writeDns(home: Home, table: DnsTable): string {
  const file = path.join(home.dir, "dns.json");
  writeFileSync(file, JSON.stringify(table));
  return file;
}

/** A DKIM key pair: the PEM private key nodemailer signs with, and the TXT record that publishes it. */
export function dkimKey(): { privateKey: string; txt: string } {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const spki = publicKey.export({ type: "spki", format: "der" }).toString("base64");
  return { privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), txt: `v=DKIM1; k=rsa; p=${spki}` };
}

/** `sigil serve --http --port 0` with the inbound SMTP listener on a free port (SIGIL_INBOUND_SMTP_PORT=0). */
export async function startInboundServer(home: Home, env: NodeJS.ProcessEnv = {}): Promise<InboundServer> {
  const server = await startHttpServer(home, { SIGIL_INBOUND_SMTP_PORT: "0", ...env });
  const m = /receiving mail by SMTP at \S+:(\d+)/.exec(server.output());
  if (!m) {
    await server.stop();
    throw new Error(`no SMTP listener: ${server.output()}`);
  }
  return Object.assign(server, { smtpPort: Number(m[1]) });
}

export interface SendOptions {
  from: string;
  to: string | string[];
  subject?: string;
  text?: string;
  html?: string;
  dkim?: { domainName: string; keySelector: string; privateKey: string };
  raw?: string | Buffer;
  envelope?: { from: string; to: string[] };
}

/** Sends one message to the listener with nodemailer (plain SMTP on loopback). */
export async function sendMail(port: number, o: SendOptions): Promise<{ response: string }> {
  const transport = nodemailer.createTransport({
    host: "127.0.0.1",
    port,
    secure: false,
    ignoreTLS: true,
    name: "sender.test",
    connectionTimeout: 60_000,
    greetingTimeout: 60_000,
    socketTimeout: 120_000,
    ...(o.dkim ? { dkim: o.dkim } : {}),
  });
  try {
    const info = await transport.sendMail(
      o.raw !== undefined
        ? { envelope: o.envelope ?? { from: o.from, to: Array.isArray(o.to) ? o.to : [o.to] }, raw: o.raw }
        : { from: o.from, to: o.to, ...(o.subject !== undefined ? { subject: o.subject } : {}), ...(o.text !== undefined ? { text: o.text } : {}), ...(o.html !== undefined ? { html: o.html } : {}) },
    );
    return { response: info.response };
  } finally {
    transport.close();
  }
}

/** The SMTP reply code and the command it answered, for a rejected send (nodemailer's `responseCode` and `command`). */
export async function rejection(p: Promise<unknown>): Promise<{ code?: number; command?: string } | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    const e = err as { responseCode?: number; command?: string };
    return { code: e.responseCode, command: e.command };
  }
}

/** The SMTP reply code a rejected send carries (nodemailer's `responseCode`). */
export async function rejectionCode(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as { responseCode?: number }).responseCode ?? -1;
  }
}
