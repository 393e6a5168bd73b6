/**
 * URLs for `sign_http_request`: only those that a WHATWG parser (browsers, Node's `URL`, fetch)
 * and an RFC 3986 parser (curl, most HTTP libraries, proxies) read the same way.
 *
 * sigil signs the origin and path it parses (WHATWG). If the agent's HTTP client reads the same
 * string differently, the request goes to another host than the one the signature names — and
 * that host can replay the signature to the one it names. `https://shop.example\@evil.com/x` is
 * `shop.example` + path `/@evil.com/x` to WHATWG but userinfo `shop.example\` + host `evil.com` to
 * RFC 3986. So a URL is refused unless it is plain: printable ASCII, `http(s)://` and exactly two
 * slashes, no userinfo of any form (`user@`, `:pw@`, `user:pw@`, or any `@` or `%` in the
 * authority), a host that the WHATWG parser leaves as it is (no numeric IPv4 shorthands, no IDNA
 * mapping: give IDNs in their `xn--` form), a port in plain digits, and a path and query that the
 * WHATWG parser does not rewrite (no `.`/`..` or `%2e` segments, nothing it would percent-encode).
 * Scheme and host letter case and a default port are the only differences allowed.
 */

export const MAX_SIGNING_URL = 8192;

export type UrlCheck =
  | { ok: true; url: URL; normalized: string }
  /** `scheme`: not http(s) at all (a policy matter: only https, or http to loopback, is signed). */
  | { ok: false; problem: string; scheme?: true };

const AUTHORITY_RE = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)([^#]*)(#.*)?$/i;

/**
 * Checks a URL given for signing. `normalized` is the URL that is signed: the WHATWG
 * serialisation without the fragment (which never reaches the server).
 */
export function checkSigningUrl(raw: unknown): UrlCheck {
  const fail = (problem: string): UrlCheck => ({ ok: false, problem });
  if (typeof raw !== "string" || raw.length === 0 || raw.length > MAX_SIGNING_URL) {
    return fail(`the URL must be a string of 1 to ${MAX_SIGNING_URL} characters`);
  }
  if (/[\u0000-\u001f\u007f]/.test(raw)) return fail("the URL contains control characters");
  if (/\s/u.test(raw)) return fail("the URL contains whitespace");
  if (!/^[\x21-\x7e]+$/.test(raw)) return fail("the URL contains non-ASCII characters (give a domain in its xn-- form and percent-encode the path)");
  if (raw.includes("\\")) return fail("the URL contains a backslash, which parsers read differently");
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(raw)?.[1];
  if (scheme !== undefined && !/^https?$/i.test(scheme)) return { ok: false, problem: "only https URLs (or http to loopback) may be signed", scheme: true };
  const m = AUTHORITY_RE.exec(raw);
  if (!m) return fail("the URL must start with https:// (or http:// for loopback) followed by a host");
  const [, , authority, rest] = m as unknown as [string, string, string, string];
  if (authority.includes("@")) return fail("the URL carries userinfo (a name or password before @), which parsers read differently");
  if (authority.includes("%")) return fail("the URL's host contains a percent escape, which parsers read differently");
  if (authority === "" || authority.startsWith("/")) return fail("the URL has no host");
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return fail("the URL is not an absolute URL");
  }
  if (u.username !== "" || u.password !== "") return fail("the URL carries userinfo (a name or password before @), which parsers read differently");
  const hp = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::([0-9]*))?$/.exec(authority);
  if (!hp) return fail("the URL's host and port cannot be read one way only");
  const [, host, port] = hp as unknown as [string, string, string | undefined];
  if (host.toLowerCase() !== u.hostname) return fail("the URL's host is read differently by different parsers (numeric shorthand, IDNA mapping or non-canonical form)");
  if (port !== undefined && !/^[1-9][0-9]{0,4}$/.test(port)) return fail("the URL's port must be plain digits without leading zeros");
  if (port !== undefined && u.port !== port && !(u.port === "" && Number(port) === (u.protocol === "https:" ? 443 : 80))) {
    return fail("the URL's port is not valid");
  }
  const pathAndQuery = rest === "" || rest.startsWith("?") ? `/${rest}` : rest;
  if (pathAndQuery !== `${u.pathname}${u.search}`) {
    return fail("the URL's path or query would be rewritten by a WHATWG parser (dot segments, %2e, or characters it escapes), so it is read differently");
  }
  const normalized = u.href.replace(/#.*$/, "");
  return { ok: true, url: u, normalized };
}
