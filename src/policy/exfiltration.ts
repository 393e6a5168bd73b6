/**
 * The exfiltration guard: a secret value read with vault_get in a session must not leave through
 * that session's outbound channels. Outbound text is checked for each secret value read, as it is
 * and in the encodings an agent could trivially apply (base64, base64url, hex, URL-encoding),
 * ignoring case for the case-insensitive ones. Secrets are held in memory only, for the session.
 */
import type { SessionMemory } from "../pipeline/tool.js";

const MIN_GUARDED_LENGTH = 4;

function forms(secret: string): string[] {
  const buf = Buffer.from(secret, "utf8");
  return [
    secret,
    buf.toString("base64").replace(/=+$/, ""),
    buf.toString("base64url"),
    buf.toString("hex"),
    encodeURIComponent(secret),
  ];
}

/** True if any of `texts` carries a secret this session has read. */
export function carriesSecret(memory: SessionMemory, texts: Array<string | undefined>): boolean {
  if (memory.secretsRead.size === 0) return false;
  const hay = texts.filter((t): t is string => typeof t === "string");
  if (hay.length === 0) return false;
  const lower = hay.map((t) => t.toLowerCase());
  const squashed = hay.map((t) => t.replace(/\s+/g, ""));
  for (const secret of memory.secretsRead) {
    if (secret.length < MIN_GUARDED_LENGTH) continue;
    for (const f of forms(secret)) {
      if (hay.some((t) => t.includes(f)) || squashed.some((t) => t.includes(f))) return true;
      if (/^[0-9a-f]+$/i.test(f) && lower.some((t) => t.includes(f.toLowerCase()))) return true;
    }
  }
  return false;
}

export const EXFILTRATION = {
  reason: "secret_exfiltration",
  message: "this message would carry a secret read from the vault in this session; it was not sent.",
} as const;
