/**
 * Fetching a Client ID Metadata Document: the one request sigil makes to a URL chosen by whoever
 * calls /authorize or /token, so it is fenced against server-side request forgery:
 *
 * - https only (plain http only to a loopback address, and only when the test suite asks:
 *   SIGIL_TEST_OAUTH_HTTP_DOCUMENTS);
 * - the host name is resolved once and EVERY address it resolves to must be public (no loopback,
 *   private, link-local, carrier-grade NAT, unique-local, multicast, documentation or reserved
 *   range; IPv4-mapped IPv6 is judged as the IPv4 address it carries); the connection goes to that
 *   vetted address (pinned: a second resolution — DNS rebinding — is never made), while TLS still
 *   verifies the certificate for the host name;
 * - no redirects (a 3xx is a failure), 200 only, at most 16 KiB, 5 s for the whole exchange.
 *
 * Hand-written: no library in the tree pins a vetted address for one request; node's BlockList
 * does the range matching.
 */
import dns from "node:dns/promises";
import http from "node:http";
import https from "node:https";
import net from "node:net";

export interface FetchPolicy {
  /** Test suite only: accept http and loopback addresses. */
  allowLoopbackHttp: boolean;
  timeoutMs?: number;
  maxBytes?: number;
}

const TIMEOUT_MS = 5000;
const MAX_BYTES = 16 * 1024;

const NOT_PUBLIC = new net.BlockList();
for (const [net4, bits] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.88.99.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const) {
  NOT_PUBLIC.addSubnet(net4, bits, "ipv4");
}
for (const [net6, bits] of [
  ["::", 96], // unspecified, loopback, IPv4-compatible
  ["64:ff9b::", 96], // NAT64: could reach anything inside
  ["64:ff9b:1::", 48],
  ["100::", 64],
  ["2001::", 23],
  ["2001:db8::", 32],
  ["2002::", 16], // 6to4
  ["fc00::", 7],
  ["fe80::", 10],
  ["fec0::", 10],
  ["ff00::", 8],
] as const) {
  NOT_PUBLIC.addSubnet(net6, bits, "ipv6");
}

const LOOPBACK = (a: string): boolean => a === "::1" || a.startsWith("127.");

/** Whether `address` (an IP literal) is a public unicast address. */
export function isPublicAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return isPublicAddress(mapped[1]!);
  const family = net.isIP(address);
  if (family === 0) return false;
  return !NOT_PUBLIC.check(address, family === 4 ? "ipv4" : "ipv6");
}

/** The vetted address to connect to for `hostname`, or a thrown reason. */
async function vetted(hostname: string, policy: FetchPolicy): Promise<{ address: string; family: number }> {
  const literal = hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
  const found = net.isIP(literal) ? [{ address: literal, family: net.isIP(literal) }] : await dns.lookup(literal, { all: true, verbatim: true });
  if (found.length === 0) throw new Error("the host does not resolve");
  for (const a of found) {
    const ok = isPublicAddress(a.address) || (policy.allowLoopbackHttp && LOOPBACK(a.address));
    if (!ok) throw new Error("the host resolves to an address that is not public");
  }
  return found[0]!;
}

/** GETs the document at `url` under the policy above and parses it as JSON. */
export async function fetchClientDocument(url: string, policy: FetchPolicy): Promise<unknown> {
  const u = new URL(url);
  if (u.protocol !== "https:" && !(policy.allowLoopbackHttp && u.protocol === "http:")) throw new Error("not https");
  const timeoutMs = policy.timeoutMs ?? TIMEOUT_MS;
  const maxBytes = policy.maxBytes ?? MAX_BYTES;
  const deadline = AbortSignal.timeout(timeoutMs);
  const target = await vetted(u.hostname, policy);
  if (u.protocol === "http:" && !LOOPBACK(target.address)) throw new Error("plain http only to a loopback address");
  const lib = u.protocol === "https:" ? https : http;
  const body = await new Promise<Buffer>((resolve, reject) => {
    const req = lib.request(
      {
        protocol: u.protocol,
        host: u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname,
        port: u.port || undefined,
        path: u.pathname + u.search,
        method: "GET",
        headers: { accept: "application/json", "user-agent": "sigil-oauth" },
        signal: deadline,
        agent: false,
        // The connection goes to the address vetted above, never to a second resolution.
        lookup: ((_host: string, opts: { all?: boolean }, cb: (...a: unknown[]) => void) => {
          if (opts?.all) cb(null, [{ address: target.address, family: target.family }]);
          else cb(null, target.address, target.family);
        }) as never,
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(res.statusCode && res.statusCode >= 300 && res.statusCode < 400 ? "redirects are not followed" : `status ${res.statusCode}`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) {
            req.destroy(new Error(`larger than ${maxBytes} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on("end", () => resolve(Buffer.concat(chunks)));
        res.on("error", reject);
      },
    );
    req.on("error", (err) => reject(deadline.aborted ? new Error(`no answer within ${timeoutMs} ms`) : err));
    req.end();
  });
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    throw new Error("not JSON");
  }
}
