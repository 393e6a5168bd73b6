/**
 * `sigil receipt explain FILE [--keys SOURCE] [--bundle FILE]`: what one receipt answers — agent,
 * tenant, approval, policy, key, delegation — each checked (src/provenance/explain.ts). FILE holds
 * the receipt as the agent got it (`structuredContent.receipt`, or the whole result). The entry is
 * looked up in the home (read-only, no master key needed) or in an exported bundle; `--keys` trusts
 * only the keys given. Exit 0 when nothing failed (unchecked answers say why), 1 when something did.
 */
import { SigilError } from "../errors.js";
import { assertBundle, bundleTenantKeys, keysFor, loadKeySource } from "../audit/anchor.js";
import { PublicHome, registryKeys, tenantKeys } from "../audit/verify-home.js";
import { type ExplainSources, explainReceipt, receiptFrom } from "../provenance/explain.js";
import { tenantJwks } from "../provenance/directory.js";
import { tenantOf } from "../tenant/tenants.js";
import type { RegisterCommands } from "./commands.js";
import { readJson } from "./receipt.js";
import { shown } from "../util/printable.js";
import { AGENT_TOOLS } from "../../tools/index.js";

// A tool of several channels (list_messages, read_message: email or sms) lists them all.
const CHANNEL_OF = new Map<string, string | readonly string[] | null>(AGENT_TOOLS.map((t) => [t.name, t.channel]));
const channelOf = (tool: string): string | readonly string[] | null | undefined => CHANNEL_OF.get(tool);

const MARK = { ok: "ok       ", failed: "FAIL     ", unchecked: "unchecked" } as const;

export const registerExplainCommands: RegisterCommands = (program, kit) => {
  const receipt = program.commands.find((c) => c.name() === "receipt");
  if (!receipt) return;
  receipt
    .command("explain")
    .description(
      "answer, for one receipt as the agent got it (structuredContent.receipt), which agent acted, for which tenant, who approved it and how, under which policy version and hash, with which key, and the tenant's delegation of that key — each checked against the log, or said why it could not be",
    )
    .argument("<file>")
    .option("--keys <source>", "trust only these keys for the identity: a JWKS or key-directory file, or an http(s) URL (e.g. /identities/<id>/keys)")
    .option("--bundle <file>", "look the entry up in an exported bundle (sigil audit export) instead of the home")
    .addOption(kit.jsonOpt())
    .action(async (file: string, o: { keys?: string; bundle?: string; json?: boolean }) => {
      const r = receiptFrom(readJson(file, "a receipt"));
      const trusted = o.keys !== undefined ? await loadKeySource(o.keys) : undefined;
      let result;
      if (o.bundle !== undefined) {
        const bundle = readJson(o.bundle, "an audit bundle");
        try {
          assertBundle(bundle);
        } catch {
          throw new SigilError("invalid_bundle", `${o.bundle} is not a sigil audit bundle.`);
        }
        const src: ExplainSources = {
          identity: { id: bundle.identity.id, name: bundle.identity.name },
          lines: bundle.entries as Iterable<string>,
          keys: trusted ? keysFor(bundle.identity.id, trusted) : bundle.keys,
          keysFrom: trusted ? trusted.source : "the bundle itself",
          keysAnchored: trusted !== undefined,
          ...(bundle.tenant && bundle.delegations ? { delegation: { tenant: bundle.tenant, delegations: bundle.delegations } } : {}),
          delegationFrom: "the tenant key and statements the bundle carries",
          channelOf,
          ...(bundle.tenant && Array.isArray(bundle.tenantLog)
            ? { tenantLog: { tenantId: bundle.tenant.id, lines: bundle.tenantLog as Iterable<string>, keys: bundleTenantKeys(bundle), from: "the bundle" } }
            : {}),
        };
        result = await explainReceipt(r, src);
      } else {
        const pub = await PublicHome.open({ home: kit.home(), config: kit.config() });
        try {
          const rec = await pub.requireIdentity(r.identityId);
          const t = await pub.store.getTenant(tenantOf(rec));
          const src: ExplainSources = {
            identity: { id: rec.id, name: rec.name },
            lines: pub.store.audit.readLines(rec.id),
            keys: trusted ? keysFor(rec.id, trusted) : registryKeys(rec),
            keysFrom: trusted ? trusted.source : "this home's registry",
            keysAnchored: true,
            ...(t ? { delegation: { tenant: { id: t.id, keys: tenantJwks(t) }, delegations: rec.delegations ?? [] } } : {}),
            delegationFrom: "this home's registry",
            channelOf,
            // Who the tenant's approvers were, when, with which keys and passkeys: its own log, under its key.
            ...(t ? { tenantLog: { tenantId: t.id, lines: pub.store.audit.readLines(t.id), keys: tenantKeys(t), from: "this home's registry" } } : {}),
          };
          result = await explainReceipt(r, src);
        } finally {
          await pub.close();
        }
      }
      kit.out(!!o.json, result, () =>
        [
          `receipt ${shown(result.identityId)}#${result.seq}`,
          ...result.answers.map((a) => `${MARK[a.status]} ${a.question}: ${a.answer !== undefined ? `${shown(a.answer)} — ` : ""}${shown(a.detail)}`),
        ].join("\n"),
      );
      if (!result.ok) {
        if (o.json) process.stderr.write(`sigil: ${shown(result.answers.find((a) => a.status === "failed")?.detail ?? "")}\n`);
        process.exitCode = 1;
      }
    });
};
