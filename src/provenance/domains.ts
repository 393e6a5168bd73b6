/**
 * Domain-separation prefixes for everything sigil signs with an identity's Ed25519 key.
 *
 * One key signs several kinds of statement (audit entries, receipts, e-mail headers, HTTP
 * requests, checkpoints). Each byte string that is signed starts with a fixed prefix naming the
 * format and its version, so a signature over one kind can never be replayed as a signature over
 * another kind (REFERENCE.md, "Audit logs that others can check").
 *
 * Two formats carry no prefix of ours, on purpose: their layout is fixed by a standard and checked
 * byte-for-byte by third parties that know nothing about sigil, so nothing may be added. They are
 * still distinct from each other and from the prefixed formats:
 * - RFC 9421 signature bases (src/provenance/http-signature.ts) always start with `"` (a quoted
 *   component identifier or `"@signature-params"`) and never end in a newline; our request
 *   signatures also carry a `tag` parameter naming their profile.
 * - C2SP signed notes (src/provenance/note.ts) sign the note text, which always ends in a newline
 *   (so it can never equal a signature base). `signNote` refuses text that starts with `"` or with
 *   `sigil-`, so a note can never equal a base or a prefixed statement either.
 * The prefixed formats below all start with `sigil-` and differ within their first line.
 *
 * Every prefix ends in `\n` and is followed by a canonical body whose own format is fixed by the
 * version in the prefix.
 */

/** A hash-chained audit entry: prefix + RFC 8785 (JCS) serialisation of the entry. */
export const AUDIT_ENTRY = "sigil-audit-entry-v1\n";

/** A receipt handed to an agent or a third party for one tool call: prefix + JCS of the receipt. */
export const RECEIPT = "sigil-receipt-v1\n";

/** A key-rotation statement (signed by the old key, carrying the new key's signature). */
export const KEY_ROTATION = "sigil-key-rotation-v1\n";

/** The `Sigil-Signature` e-mail header, format v1 (src/provenance/email-signature.ts; verified only on request). */
export const EMAIL = "sigil-email-v1\n";

/** The `Sigil-Signature` e-mail header, format v2 (also covers Subject, display names and every body part). */
export const EMAIL_V2 = "sigil-email-v2\n";

/** An approver's decision on one approval (src/approval/approvals.ts): prefix + JCS of the decision statement. Signed by approver keys only. */
export const APPROVAL_DECISION = "sigil-approval-decision-v1\n";

/** All prefixes, to check that none is a prefix of another (tested). */
export const ALL_DOMAINS: readonly string[] = [AUDIT_ENTRY, RECEIPT, KEY_ROTATION, EMAIL, EMAIL_V2, APPROVAL_DECISION];

/** What every prefix above starts with; formats without a prefix must never start with it. */
export const DOMAIN_PREFIX_START = "sigil-";
