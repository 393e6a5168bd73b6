/**
 * Proofs for parties outside sigil:
 *
 *   sigil receipt show ID SEQ                     a standalone receipt for one audit entry (JSON)
 *   sigil receipt verify FILE --keys JWKS         checks a receipt with no home (without --keys: unanchored, exit 3)
 *   sigil receipt verify-email FILE.eml [--keys JWKS]
 *                                                 checks a received message's Sigil-Signature
 *   sigil audit checkpoint ID                     a signed checkpoint of the identity's log
 *
 * `verify` and `verify-email` exit 0 when the proof holds and 1 (with the reason on stderr)
 * when it does not; `verify` without `--keys` can only say the receipt is consistent with the keys
 * it embeds, which proves nothing about whose they are: it prints `unanchored` and exits 3.
 * verify-email needs the sender's public keys: `--keys` with a JWKS from `sigil keys export ID` or
 * `GET /identities/<id>/keys`; without it, the home's registry (when there is a home) supplies them.
 */
import { readFileSync } from "node:fs";
import { SigilError } from "../errors.js";
import { makeCheckpoint } from "../provenance/checkpoint.js";
import { identityJwks, keysFromJwks } from "../provenance/directory.js";
import { EMAIL_SIGNATURE_ERRORS, verifyEmailSignature, type EmailSignatureError } from "../provenance/email-signature.js";
import { makeReceipt, verifyReceipt } from "../provenance/receipt.js";
import type { RegisterCommands } from "./commands.js";
import { shown } from "../util/printable.js";

/** A JSON file the user named, or a clear error saying which and why (also `receipt explain`). */
export function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new SigilError("unreadable", `${file} cannot be read.`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new SigilError("invalid_arguments", `${file} is not ${what} (not valid JSON).`);
  }
}

export type EmailCheck = {
  ok: boolean;
  identityId?: string;
  kid?: string;
  ts?: number;
  /** The signature's format: 2, or 1 (accepted only with --accept-v1: Subject, display names and HTML unchecked). */
  version?: 1 | 2;
  from?: string;
  to?: string[];
  cc?: string[];
  messageId?: string;
  keysSource: "supplied" | "home" | "none";
  error?: string;
  /** The failure as one sentence. */
  reason?: string;
};

export const registerReceiptCommands: RegisterCommands = (program, kit) => {
  const receipt = program.command("receipt").description("standalone proofs of what an identity did, for parties outside sigil");
  receipt
    .command("show")
    .description("print a standalone receipt for entry SEQ of the identity's log: the signed entry, the keys, a signed checkpoint and the entry's inclusion proof")
    .argument("<id>")
    .argument("<seq>")
    .addOption(kit.jsonOpt())
    .action(async (id: string, seq: string) => {
      if (!/^[1-9][0-9]{0,15}$/.test(seq)) throw new SigilError("invalid_arguments", "SEQ must be a positive whole number.");
      const doc = await kit.withApp((app) => makeReceipt(app, id, Number(seq)));
      process.stdout.write(JSON.stringify(doc, null, 2) + "\n");
    });

  receipt
    .command("verify")
    .description(
      "check a receipt offline (no home needed) against the identity's published JWKS (--keys); exit 0 when it verifies against them, 1 when it does not verify, 3 when it is only consistent with the keys it embeds (unanchored: give --keys)",
    )
    .argument("<file>")
    .option("--keys <file>", "the identity's JWKS (sigil keys export ID, or GET /identities/<id>/keys): only these keys are trusted")
    .addOption(kit.jsonOpt())
    .action(async (file: string, o: { keys?: string; json?: boolean }) => {
      const doc = readJson(file, "a receipt");
      const keys = o.keys !== undefined ? readJson(o.keys, "a JWKS") : undefined;
      const checked = verifyReceipt(doc, keys);
      // Like a bundle: keys the receipt carries prove consistency, not origin. Only keys the
      // verifier brought (--keys) anchor it; otherwise a receipt that checks out is `unanchored`.
      const verdict = !checked.ok ? "failed" : checked.keysSource === "supplied" ? "ok" : "unanchored";
      const r = { ...checked, ok: verdict === "ok", verdict, anchored: checked.keysSource === "supplied" };
      kit.out(!!o.json, r, () =>
        verdict === "ok"
          ? `ok   ${shown(r.identityId)}#${r.seq}: ${shown(r.tool)} ${shown(r.decision)} at ${shown(r.ts)}, signed by key ${shown(r.keyId)} (supplied keys), in the log's checkpoint of size ${r.checkpoint!.size}`
          : verdict === "unanchored"
            ? `unanchored ${shown(r.identityId)}#${r.seq}: consistent with the keys the receipt itself carries, but nothing anchors them (give --keys with the identity's published JWKS)`
            : `FAIL ${shown(r.identityId ?? "receipt")}${r.seq !== undefined ? `#${shown(r.seq)}` : ""}: ${shown(r.error)}`,
      );
      if (verdict === "failed") {
        if (o.json) process.stderr.write(`sigil: ${shown(r.error)}\n`);
        process.exitCode = 1;
      } else if (verdict === "unanchored") {
        if (o.json) process.stderr.write("sigil: unanchored: the receipt is consistent with the keys it carries, but nothing anchors them; give --keys JWKS\n");
        process.exitCode = 3;
      }
    });

  receipt
    .command("verify-email")
    .description("check the Sigil-Signature header of a received message (.eml): From (display name included), To, Cc, Subject, Date, Message-ID, each exactly once, and every text and HTML part in order")
    .argument("<file>")
    .option("--keys <file>", "the sender identity's JWKS (sigil keys export ID, or GET /identities/<id>/keys); default: this home's registry")
    .option("--accept-v1", "also accept format v1 signatures (older sigil), which do not cover the Subject, display names or the HTML part")
    .addOption(kit.jsonOpt())
    .action(async (file: string, o: { keys?: string; json?: boolean; acceptV1?: boolean }) => {
      let raw: string;
      try {
        raw = readFileSync(file, "latin1"); // bytes as they are; parts are decoded by their charset
      } catch {
        throw new SigilError("unreadable", `${file} cannot be read.`);
      }
      const r = await checkEmail(raw, o.keys, kit, !!o.acceptV1);
      kit.out(!!o.json, r, () =>
        r.ok
          ? `ok   ${shown(r.messageId)} from ${shown(r.from)} to ${[...r.to!, ...r.cc!].map(shown).join(", ")}: signed by ${shown(r.identityId)} with key ${shown(r.kid)} at ${new Date(r.ts! * 1000).toISOString()}${r.version === 1 ? " (format v1: Subject, display names and HTML not covered)" : ""}`
          : `FAIL ${shown(file)}: ${shown(r.reason ?? r.error)}.`,
      );
      if (!r.ok) {
        if (o.json) process.stderr.write(`sigil: ${shown(r.reason ?? r.error)}.\n`);
        process.exitCode = 1;
      }
    });

  const audit = program.commands.find((c) => c.name() === "audit");
  if (audit) {
    audit
      .command("checkpoint")
      .description("print a signed checkpoint (C2SP signed note: origin, size, Merkle root) of the identity's log; keep it, and later `sigil audit verify --checkpoint FILE` detects truncation or rollback. The chain is opened first, as a server opens it: an intent left open by a process that died gets its result before the checkpoint commits to the log")
      .argument("<id>")
      .addOption(kit.jsonOpt())
      .action(async (id: string, o: { json?: boolean }) => {
        const cp = await kit.withApp(async (app) => {
          await app.identities.require(id);
          // Opening the chain resolves intents of dead processes (an admin one from the store's
          // actual state, src/identity/identities.ts adminOutcome) and settles the key windows, so
          // the checkpoint never commits to a log that still leaves a finished change open.
          await app.chains.state(id);
          return makeCheckpoint(app, id);
        });
        if (o.json) process.stdout.write(JSON.stringify(cp, null, 2) + "\n");
        else process.stdout.write(cp.note);
      });
  }
};

async function checkEmail(raw: string, keysFile: string | undefined, kit: Parameters<RegisterCommands>[1], acceptV1: boolean): Promise<EmailCheck> {
  // Loaded on use: the MIME reader (libmime and its charsets) is not needed to serve.
  const { parseEml } = await import("../provenance/eml.js");
  let parsed: Awaited<ReturnType<typeof parseEml>>;
  try {
    parsed = parseEml(raw);
  } catch (err) {
    return { ok: false, keysSource: "none", error: `the message cannot be read: ${(err as Error).message}` };
  }
  const about = { from: parsed.from.address, to: parsed.to.map((m) => m.address), cc: parsed.cc.map((m) => m.address), messageId: parsed.messageId };
  if (parsed.headerValues.length === 0) return { ok: false, keysSource: "none", ...about, error: "the message has no Sigil-Signature header" };
  const claimed = /(?:^|;)\s*id=([^;\s]+)/.exec(parsed.headerValues[0]!.replace(/\r?\n[ \t]+/g, " "))?.[1];
  if (!claimed) return { ok: false, keysSource: "none", ...about, error: "the Sigil-Signature header names no identity" };

  let jwksDoc: unknown;
  let keysSource: EmailCheck["keysSource"];
  if (keysFile !== undefined) {
    jwksDoc = readJson(keysFile, "a JWKS");
    keysSource = "supplied";
    const named = (jwksDoc as { identity?: unknown })?.identity;
    if (named !== undefined && named !== claimed) {
      return { ok: false, keysSource, ...about, identityId: claimed, error: `the keys are those of ${String(named)}, but the message names ${claimed}` };
    }
  } else {
    keysSource = "home";
    try {
      jwksDoc = await kit.withApp(async (app) => identityJwks(await app.identities.require(claimed)));
    } catch (err) {
      if (err instanceof SigilError && err.code === "not_initialised") {
        throw new SigilError("invalid_arguments", "No sigil home here to look the sender's keys up in; give them with --keys FILE (a JWKS from `sigil keys export ID` or GET /identities/<id>/keys).");
      }
      throw err;
    }
  }
  let keys: ReturnType<typeof keysFromJwks>;
  try {
    keys = keysFromJwks(jwksDoc);
  } catch (err) {
    return { ok: false, keysSource, ...about, identityId: claimed, error: (err as Error).message };
  }
  let last: EmailSignatureError = "bad_signature";
  for (const headerValue of parsed.headerValues) {
    const r = verifyEmailSignature({ ...parsed, headerValue }, keys, { acceptV1 });
    if (r.ok) return { ok: true, keysSource, ...about, identityId: r.identityId, kid: r.kid, ts: r.ts, version: r.version };
    last = r.error;
  }
  return { ok: false, keysSource, ...about, identityId: claimed, error: last, reason: EMAIL_SIGNATURE_ERRORS[last] };
}
