/**
 * The `sigil` command line (README: "Command line"). Every command that prints data accepts --json and then prints
 * exactly one JSON document on stdout; errors go to stderr as one sentence with a non-zero exit.
 * The local CLI acts with the authority of whoever can read the home; it needs no token.
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { SigilError } from "../errors.js";
import { type Config, ConfigError, environmentHelp, parseConfig } from "../config.js";
import { type App, initHome, openApp } from "../app.js";
import { COMMANDS } from "./commands.js";
import { type CheckpointCheck, type LogReader, readCheckpointFile, verifyCheckpointFile } from "../provenance/checkpoint.js";
import { type Anchor, type VerifyReport, keysFor, loadKeySource, report, verifyBundle } from "../audit/anchor.js";
import { PublicHome } from "../audit/verify-home.js";
import type { VerifyResult } from "../audit/verify.js";
import { printableJson, printableText, shown } from "../util/printable.js";
import { listenError } from "./listen.js";

/**
 * The environment, parsed once before a command runs (the `preAction` hook, after `--store`):
 * a bad value stops the command before it opens or changes anything (exit 2).
 */
let parsed: Config | undefined;
const config = (): Config => (parsed ??= parseConfig(process.env));
const home = (): string => config().home;

/** Prints a command's result; nothing derived from input reaches the terminal unescaped (util/printable.ts). */
function out(json: boolean, data: unknown, human: () => string): void {
  process.stdout.write(json ? printableJson(JSON.stringify(data, null, 2)) + "\n" : printableText(human()) + "\n");
}

async function withApp<T>(fn: (app: App) => Promise<T>): Promise<T> {
  const app = await openApp({ home: home(), config: config() });
  try {
    return await fn(app);
  } finally {
    await app.close();
  }
}

function readPolicyArg(value: string | undefined): unknown {
  if (value === undefined) return {};
  let text = value;
  if (value.startsWith("@")) {
    try {
      text = readFileSync(value.slice(1), "utf8");
    } catch {
      throw new SigilError("invalid_policy", `--policy ${value.slice(0, 80)}: the file cannot be read.`);
    }
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new SigilError("invalid_policy", "--policy is not valid JSON (give JSON, or @file with JSON in it).");
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

const jsonOpt = (): Option => new Option("--json", "print one JSON document on stdout");

export function buildCli(): Command {
  const program = new Command("sigil")
    .description("An MCP server that gives every AI agent its own identity, policy and signed audit log.")
    .version("0.1.0")
    .exitOverride()
    .configureOutput({ writeErr: (str) => process.stderr.write(printableText(str)) })
    .showHelpAfterError("(add --help for usage)")
    .addHelpText("after", environmentHelp());
  // --store URL (any position) selects the PostgreSQL store, exactly like SIGIL_STORE_URL.
  program.option("--store <url>", "keep identities, secrets and audit chains in PostgreSQL (postgres://…) instead of the home; sets SIGIL_STORE_URL");
  program.hook("preAction", () => {
    const store = program.opts<{ store?: string }>().store;
    parsed = parseConfig(store !== undefined ? { ...process.env, SIGIL_STORE_URL: store } : process.env);
  });

  program
    .command("init")
    .description("create the home: registry, master key and admin token (refuses if it exists)")
    .addOption(jsonOpt())
    .action(async (o: { json?: boolean }) => {
      const r = await initHome({ home: home(), config: config() });
      out(!!o.json, r, () => `Initialised ${r.home}\nAdmin token (shown once, keep it safe): ${r.adminToken}`);
    });

  program
    .command("serve")
    .description("serve MCP over stdio for SIGIL_TOKEN (or SIGIL_TOKEN_FILE), or over Streamable HTTP with --http")
    .option("--http", "serve Streamable HTTP at http://HOST:PORT/mcp (Authorization: Bearer <token>) and the web console at /console")
    .option("--host <host>", "address to bind with --http", "127.0.0.1")
    .option("--port <port>", "port with --http (0: any free port)", parsePort, 7410)
    .option("--smtp-port <port>", "with --http: also receive mail for identity addresses by SMTP on this port, same host (or SIGIL_INBOUND_SMTP_PORT)", parsePort)
    .addHelpText(
      "after",
      "\nWith --http: SIGIL_MAX_SESSIONS_PER_IDENTITY (sessions per identity, default 32), SIGIL_REQUEST_TIMEOUT_MS\n(headers and body must arrive within it, default 30000), SIGIL_ALLOWED_HOSTS, SIGIL_ALLOWED_ORIGINS.\nAny transport: SIGIL_REFUSALS_PER_MINUTE (refusals written one by one per identity and minute, default 60).\nInbound (--http): --smtp-port or SIGIL_INBOUND_SMTP_PORT (mail), POST /webhooks/twilio/sms (SMS; needs SIGIL_PUBLIC_URL\nand TWILIO_AUTH_TOKEN), SIGIL_INBOUND_TLS_CERT_FILE + SIGIL_INBOUND_TLS_KEY_FILE (STARTTLS). See the README (Inbound).",
    )
    .action(async (o: { http?: boolean; host: string; port: number; smtpPort?: number }) => {
      if (o.smtpPort !== undefined && !o.http) throw new ConfigError("--smtp-port needs --http (the inbound listener runs beside the HTTP server).");
      const app = await openApp({ home: home(), config: config() });
      if (o.http) {
        await startHttp(app, o.host, o.port, o.smtpPort ?? app.config.inboundSmtpPort);
      } else {
        const { serveStdio } = await import("../server/stdio.js");
        await serveStdio(app);
      }
    });

  program
    .command("start")
    .description("the quick start (npm start): initialise a home if there is none, create a demo identity, serve HTTP on 127.0.0.1:7410")
    .option("--host <host>", "address to bind", "127.0.0.1")
    .option("--port <port>", "port (0: any free port)", parsePort, 7410)
    .action(async (o: { host: string; port: number }) => {
      const { quickStart } = await import("./start.js");
      await quickStart(home(), config(), o.host, o.port, startHttp);
    });

  const identity = program.command("identity").description("issue and manage agent identities");
  identity
    .command("create")
    .description("issue an identity: its own signing key, agent token (shown once) and policy")
    .requiredOption("--name <name>", "a human-readable name")
    .requiredOption("--channels <list>", "comma-separated: email,sms,voice,vault,card,sign")
    .option("--policy <json|@file>", "the policy document (default deny)")
    .option("--email <addr>", "the identity's own From address")
    .option("--phone <e164>", "the identity's own phone number")
    .option("--tenant <id>", "the tenant it belongs to (sigil tenant list)", "default")
    .addOption(jsonOpt())
    .action(async (o: { name: string; channels: string; policy?: string; email?: string; phone?: string; tenant: string; json?: boolean }) => {
      const policy = readPolicyArg(o.policy);
      const r = await withApp((app) => app.identities.create({ name: o.name, channels: o.channels.split(","), policy, email: o.email, phone: o.phone, tenantId: o.tenant }));
      out(!!o.json, r, () => `Created ${r.id} (${r.name})\nkey: ${r.keyId}\nAgent token (shown once): ${r.token}`);
    });
  identity
    .command("list")
    .description("list identities (never tokens or private keys)")
    .addOption(jsonOpt())
    .action(async (o: { json?: boolean }) => {
      const list = await withApp((app) => app.identities.list());
      out(!!o.json, list, () =>
        list.length === 0 ? "No identities." : list.map((i) => `${shown(i.id)}  ${shown(i.name)}  [${i.channels.join(",")}]${i.revokedAt ? "  revoked" : ""}`).join("\n"),
      );
    });
  identity
    .command("show")
    .description("show one identity")
    .argument("<id>")
    .addOption(jsonOpt())
    .action(async (id: string, o: { json?: boolean }) => {
      const v = await withApp((app) => app.identities.show(id));
      out(!!o.json, v, () => JSON.stringify(v, null, 2));
    });
  identity
    .command("rotate-key")
    .description("give the identity a new signing key; the old one stays verifiable")
    .argument("<id>")
    .addOption(jsonOpt())
    .action(async (id: string, o: { json?: boolean }) => {
      const r = await withApp((app) => app.identities.rotateKey(id));
      out(!!o.json, r, () => `New key ${r.keyId} (previous ${r.previousKeyId})`);
    });
  identity
    .command("rotate-token")
    .description("issue a new agent token; the old one stops working at once")
    .argument("<id>")
    .addOption(jsonOpt())
    .action(async (id: string, o: { json?: boolean }) => {
      const r = await withApp((app) => app.identities.rotateToken(id));
      out(!!o.json, r, () => `New agent token (shown once): ${r.token}`);
    });
  identity
    .command("revoke")
    .description("revoke the identity: its token stops working, running sessions are refused on their next call")
    .argument("<id>")
    .addOption(jsonOpt())
    .action(async (id: string, o: { json?: boolean }) => {
      const r = await withApp((app) => app.identities.revoke(id));
      out(!!o.json, r, () => `Revoked ${r.id} at ${r.revokedAt}`);
    });

  const audit = program.command("audit").description("verify and export the signed audit logs");
  audit
    .command("verify")
    .description(
      "verify every entry of one identity's log, one tenant's own log (ID default or tn_…: its approvers and passkeys, checked against the registry too), or of all logs (needs public data only, never the master key); exit 0 when all verify, 1 and the first bad seq when not, 3 when a bundle is only self-consistent (unanchored: give --keys or --checkpoint)",
    )
    .argument("[id]")
    .option("--bundle <file>", "verify an exported bundle offline, without the home")
    .option("--keys <source>", "trust only these keys: a JWKS or key-directory JSON file, or an http(s) URL serving one (e.g. the server's /identities/<id>/keys)")
    .option("--checkpoint <file>", "also check that the log still holds what a kept checkpoint (or receipt) commits to: detects truncation and rollback")
    .addOption(jsonOpt())
    .action(async (id: string | undefined, o: { bundle?: string; keys?: string; checkpoint?: string; json?: boolean }) => {
      const note = o.checkpoint !== undefined ? readCheckpointFile(o.checkpoint) : undefined;
      const trusted = o.keys !== undefined ? await loadKeySource(o.keys) : undefined;
      let chains: { identities: VerifyResult[]; tenants?: VerifyResult[] };
      let cp: CheckpointCheck | undefined;
      let anchor: Anchor | undefined = trusted ? "keys" : undefined;
      if (o.bundle) {
        let bundle: unknown;
        try {
          bundle = JSON.parse(readFileSync(o.bundle, "utf8"));
        } catch {
          throw new SigilError("invalid_bundle", `${o.bundle} cannot be read as a JSON bundle.`);
        }
        if (note !== undefined) {
          const r = await verifyCheckpointFile(note, { bundle, trusted });
          chains = r;
          cp = r.checkpoint;
        } else chains = await verifyBundle(bundle, trusted);
      } else {
        anchor ??= "home";
        const pub = await PublicHome.open({ home: home(), config: config() });
        try {
          if (note !== undefined) {
            const reader: LogReader = trusted
              ? { store: pub.store, requireIdentity: (x) => pub.requireIdentity(x), publicKeys: (r) => keysFor(r.id, trusted), verify: (x) => pub.verify(x, trusted) }
              : pub;
            const r = await verifyCheckpointFile(note, { log: reader, id });
            chains = r;
            cp = r.checkpoint;
          } else chains = await pub.verify(id, trusted);
        } finally {
          await pub.close();
        }
      }
      if (cp?.ok) anchor ??= "checkpoint";
      const rep: VerifyReport & { checkpoint?: CheckpointCheck } = { ...report(chains.identities, anchor, chains.tenants), ...(cp ? { checkpoint: cp } : {}) };
      const at = (r: VerifyResult): string => (r.firstBadSeq !== undefined ? `seq ${r.firstBadSeq}: ` : "");
      if (cp && !cp.ok) Object.assign(rep, { ok: false, verdict: "failed" });
      out(!!o.json, rep, () =>
        (rep.identities
          .map((r) =>
            !r.ok
              ? `FAIL ${shown(r.id)}: ${at(r)}${shown(r.error ?? "")}`
              : rep.verdict === "unanchored"
                ? `unanchored ${shown(r.id)}: ${r.entries} entries are self-consistent, but nothing anchors their keys (give --keys with the identity's published keys, or --checkpoint)`
                : `ok   ${shown(r.id)}: ${r.entries} entries verify`,
          )
          .concat((rep.tenants ?? []).map((r) => (r.ok ? `ok   tenant ${shown(r.id)}: ${r.entries} entries verify, and the registry's approvers and passkeys agree with them` : `FAIL tenant ${shown(r.id)}: ${at(r)}${shown(r.error ?? "")}`)))
          .join("\n") || "No identities.") +
        (cp ? (cp.ok ? `\nok   checkpoint ${shown(cp.origin)} size ${cp.size}: the log still holds it` : `\nFAIL checkpoint ${shown(cp.origin)}: ${shown(cp.error ?? "")}`) : ""),
      );
      if (rep.verdict === "failed") {
        const bad = rep.identities.find((r) => !r.ok) ?? rep.tenants?.find((r) => !r.ok);
        if (o.json) process.stderr.write(bad ? `sigil: ${shown(bad.id)}: ${at(bad)}${shown(bad.error ?? "")}\n` : `sigil: checkpoint ${shown(cp?.origin ?? "")}: ${shown(cp?.error ?? "")}\n`);
        process.exitCode = 1;
      } else if (rep.verdict === "unanchored") {
        if (o.json) process.stderr.write("sigil: unanchored: the bundle is self-consistent, but nothing anchors its keys; give --keys SOURCE or --checkpoint FILE\n");
        process.exitCode = 3;
      }
    });
  audit
    .command("export")
    .description("print a self-contained bundle (entries + public key history) for offline verification")
    .argument("<id>")
    .addOption(jsonOpt())
    .action(async (id: string) => {
      const b = await withApp((app) => app.audit.exportBundle(id));
      process.stdout.write(printableJson(JSON.stringify(b, null, 2)) + "\n");
    });

  for (const register of COMMANDS) register(program, { home, config, out, withApp, jsonOpt, readStdin });
  return program;
}

/** `--port`: a usage error (exit 2) unless a whole number 0..65535. */
function parsePort(p: string): number {
  const n = Number(p);
  if (!/^\d{1,5}$/.test(p) || n > 65535) throw new InvalidArgumentError("A port is a whole number from 0 to 65535 (0 picks a free one).");
  return n;
}


/** The web console's URL beside the MCP endpoint's (same host and port). */
export const consoleUrl = (mcpUrl: string): string => mcpUrl.replace(/\/mcp$/, "/console");

export async function startHttp(app: App, host: string, port: number, smtpPort?: number): Promise<string> {
  const { serveHttp } = await import("../server/http.js");
  const allowedHosts = [...app.config.allowedHosts];
  const allowedOrigins = app.config.allowedOrigins;
  const { publicRoutes } = await import("../server/public-routes.js");
  const publicUrl = app.config.publicUrl; // SIGIL_PUBLIC_URL: where outside parties reach this server
  if (publicUrl) allowedHosts.push(new URL(publicUrl).host);
  const { inboundRoutes, startInbound } = await import("../inbound/listen.js");
  let served: Awaited<ReturnType<typeof serveHttp>>;
  try {
    const { oauthServer } = await import("../oauth/server.js");
    const { consoleGate } = await import("../oauth/console-gate.js");
    const oauth = oauthServer(app, consoleGate(app));
    served = await serveHttp(app, { host, port, allowedHosts, allowedOrigins, publicRoutes: publicRoutes(app), oauth, webhooks: inboundRoutes(app) });
  } catch (err) {
    throw listenError(err, host, port);
  }
  let inbound: Awaited<ReturnType<typeof startInbound>> | undefined;
  if (smtpPort !== undefined) {
    try {
      inbound = await startInbound(app, host, smtpPort);
    } catch (err) {
      await served.close();
      throw err instanceof SigilError ? err : listenError(err, host, smtpPort);
    }
    process.stderr.write(`sigil: receiving mail by SMTP at ${host.includes(":") ? `[${host}]` : host}:${inbound.port}\n`);
  }
  const url = served.url;
  const close = async (): Promise<void> => {
    await inbound?.close();
    await served.close();
  };
  process.stderr.write(`sigil: serving Streamable HTTP at ${url}\n`);
  process.stderr.write(`sigil: web console at ${consoleUrl(url)} (sign in with an admin or approver token)\n`);
  const shutdown = (): void => {
    setTimeout(() => process.exit(0), 5000).unref(); // a stuck connection never keeps a stopped server alive
    void close().finally(() => app.close().finally(() => process.exit(0)));
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
  return url;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildCli();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exit(err.exitCode === 0 ? 0 : 2);
    }
    if (err instanceof SigilError) {
      process.stderr.write(`sigil: ${shown(err.publicMessage)}\n`);
      process.exit(err instanceof ConfigError ? 2 : 1);
    }
    process.stderr.write(`sigil: ${shown(err instanceof Error ? err.message : String(err))}\n`);
    process.exit(1);
  }
}

void main(process.argv);
