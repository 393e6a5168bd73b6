/**
 * Inbound text as the model is shown it. Whatever a sender wrote reaches the agent, but nothing in it
 * is invisible: zero-width and bidirectional-control characters, other format and control
 * characters, and unassigned or private-use code points are shown as `\u{XXXX}` escapes, so that
 * `Pay\u{202E}gpj.exe` reads as what it is. Line breaks and tabs are kept in bodies; in one-line
 * fields (subject, names, addresses) they are escaped too. Lengths are bounded.
 */

/** Format (Cf: zero-width, bidi controls…), control (Cc), line/paragraph separators, private use, surrogates, unassigned. */
const INVISIBLE = /[\p{Cf}\p{Cc}\p{Zl}\p{Zp}\p{Co}\p{Cs}\p{Cn}]/gu;
/** Also a backslash that starts `u{`: a sender cannot write text that reads like one of our escapes. */
const INVISIBLE_OR_BACKSLASH = /[\p{Cf}\p{Cc}\p{Zl}\p{Zp}\p{Co}\p{Cs}\p{Cn}]|\\(?=u\{)/gu;

const escapeOf = (ch: string): string => (ch === "\\" ? "\\\\" : `\\u{${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}}`);

/** One line: every invisible or control character (line breaks included) escaped, at most `max` characters kept. */
export function visibleLine(s: string, max: number): string {
  const cut = s.length > max ? `${s.slice(0, max)}…` : s;
  return cut.replace(INVISIBLE_OR_BACKSLASH, escapeOf);
}

/** A body: line breaks (normalised to \n) and tabs kept, every other invisible or control character escaped. */
export function visibleText(s: string, max: number): { text: string; truncated: boolean } {
  const truncated = s.length > max;
  const cut = (truncated ? s.slice(0, max) : s).replace(/\r\n?/g, "\n");
  const text = cut.replace(INVISIBLE_OR_BACKSLASH, (ch) => (ch === "\n" || ch === "\t" ? ch : escapeOf(ch)));
  return { text, truncated };
}

/** Whether `s` holds anything `visibleLine` would escape. */
export function hasInvisible(s: string): boolean {
  INVISIBLE.lastIndex = 0;
  return INVISIBLE.test(s);
}
