/**
 * Output cannot be forged by input. Whatever sigil prints that came from outside — identity
 * names, receipt and bundle fields, mail headers, error details — goes through these before it
 * reaches a terminal or a log, so that it cannot move the cursor, recolour or rewrite what was
 * printed before (ESC/CSI sequences, CR, BS), ring the bell, start a new line that looks like
 * sigil's own (LF, U+2028, U+2029) or reorder the text on screen (bidirectional overrides).
 * Each such character is shown as a visible escape (`\x1B`, `\u2028`) instead.
 */

/** C0 and C1 controls, DEL, the Unicode line/paragraph separators and the bidi controls. */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** The same, except the newline (for whole multi-line texts whose fields were escaped already). */
const UNSAFE_BUT_NEWLINE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** What JSON.stringify leaves raw that a terminal may still act on. */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function escape(c: string): string {
  const n = c.charCodeAt(0);
  return n <= 0xff ? `\\x${n.toString(16).toUpperCase().padStart(2, "0")}` : `\\u${n.toString(16).toUpperCase().padStart(4, "0")}`;
}

/** One value, shown on one line: every control character escaped, newlines included. */
export function shown(value: unknown): string {
  return String(value).replace(UNSAFE, escape);
}

/** A whole human-readable text: its own line breaks kept, every other control character escaped. */
export function printableText(text: string): string {
  return text.replace(UNSAFE_BUT_NEWLINE, escape);
}

/**
 * A JSON document: JSON.stringify already escapes C0 controls; DEL, C1 controls (a lone U+009B is
 * a CSI on some terminals), the line separators and the bidi controls become \u escapes too. The
 * document means exactly the same to any JSON parser.
 */
export function printableJson(text: string): string {
  return text.replace(UNSAFE_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
