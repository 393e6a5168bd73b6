/**
 * A Twilio-compatible REST API on 127.0.0.1 (random port) for tests, on plain `node:http`.
 *
 * It serves `POST /2010-04-01/Accounts/:sid/Messages.json` and `.../Calls.json`, checks
 * HTTP Basic auth against the configured account SID and auth token, parses the form
 * body, records every request, and answers like Twilio (201 JSON with a `sid`). With
 * `setMode()` it can instead answer a Twilio error JSON with any status (400, 429, 500,
 * 503, …), a 201 with a non-JSON body, never answer, answer endlessly slowly, or drop
 * the connection.
 * `close()` ends everything immediately.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export type TwilioMode =
  | { kind: "ok" }
  | { kind: "error"; status: number; code?: number; message?: string }
  | { kind: "status"; status: number; body: string; contentType?: string }
  | { kind: "garbage" }
  | { kind: "hang" }
  /** Send the status line and headers, then one body byte every 100 ms, forever. */
  | { kind: "trickle" }
  | { kind: "drop" };

export interface TwilioRecordedRequest {
  method: string;
  path: string;
  /** "sms" for Messages.json, "call" for Calls.json, "other" otherwise. */
  resource: "sms" | "call" | "other";
  accountSid?: string;
  /** Decoded Basic credentials, if any. */
  basicAuth?: { user: string; pass: string };
  authorized: boolean;
  contentType?: string;
  /** Form fields (last value wins). */
  form: Record<string, string>;
  rawBody: string;
}

export interface TestTwilioServer {
  readonly port: number;
  /** `http://127.0.0.1:port`, to use as SIGIL_TWILIO_API_URL. */
  readonly url: string;
  readonly requests: TwilioRecordedRequest[];
  setMode(mode: TwilioMode): void;
  close(): Promise<void>;
}

const PATH = /^\/2010-04-01\/Accounts\/([^/]+)\/(Messages|Calls)\.json$/;

function parseBasic(header: string | undefined): { user: string; pass: string } | undefined {
  const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header ?? "");
  if (!m || !m[1]) return undefined;
  const decoded = Buffer.from(m[1], "base64").toString("utf8");
  const i = decoded.indexOf(":");
  return i < 0 ? undefined : { user: decoded.slice(0, i), pass: decoded.slice(i + 1) };
}

function twilioError(res: ServerResponse, status: number, code: number, message: string): void {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status }));
}

export async function startTwilioServer(opts: { accountSid: string; authToken: string; mode?: TwilioMode }): Promise<TestTwilioServer> {
  let mode: TwilioMode = opts.mode ?? { kind: "ok" };
  const requests: TwilioRecordedRequest[] = [];
  const sockets = new Set<Socket>();

  const handle = (req: IncomingMessage, res: ServerResponse, rawBody: string) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const match = PATH.exec(url.pathname);
    const basicAuth = parseBasic(req.headers.authorization);
    const authorized = !!basicAuth && basicAuth.user === opts.accountSid && basicAuth.pass === opts.authToken;
    const form: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(rawBody)) form[k] = v;
    const record: TwilioRecordedRequest = {
      method: req.method ?? "",
      path: url.pathname,
      resource: match?.[2] === "Messages" ? "sms" : match?.[2] === "Calls" ? "call" : "other",
      authorized,
      form,
      rawBody,
      ...(match?.[1] ? { accountSid: decodeURIComponent(match[1]) } : {}),
      ...(basicAuth ? { basicAuth } : {}),
      ...(req.headers["content-type"] ? { contentType: req.headers["content-type"] } : {}),
    };
    requests.push(record);

    if (!match || req.method !== "POST") return twilioError(res, 404, 20404, "The requested resource was not found");
    if (!authorized || record.accountSid !== opts.accountSid) return twilioError(res, 401, 20003, "Authenticate");

    switch (mode.kind) {
      case "hang":
        return; // never answer
      case "drop":
        req.socket.destroy();
        return;
      case "trickle": {
        res.writeHead(201, { "Content-Type": "application/json" });
        res.write(" ");
        const timer = setInterval(() => res.write(" "), 100);
        res.on("close", () => clearInterval(timer));
        return;
      }
      case "garbage":
        res.writeHead(201, { "Content-Type": "application/json" });
        res.end("<html><body>definitely not json");
        return;
      case "status":
        res.writeHead(mode.status, { "Content-Type": mode.contentType ?? "text/plain" });
        res.end(mode.body);
        return;
      case "error":
        return twilioError(res, mode.status, mode.code ?? 20000 + mode.status, mode.message ?? "error");
      case "ok": {
        const isSms = record.resource === "sms";
        const sid = (isSms ? "SM" : "CA") + randomBytes(16).toString("hex");
        const now = new Date().toUTCString();
        const body = isSms
          ? { sid, account_sid: opts.accountSid, from: form.From, to: form.To, body: form.Body, status: "queued", date_created: now, direction: "outbound-api", api_version: "2010-04-01", uri: `${url.pathname.replace(/\.json$/, "")}/${sid}.json` }
          : { sid, account_sid: opts.accountSid, from: form.From, to: form.To, status: "queued", date_created: now, direction: "outbound-api", api_version: "2010-04-01", uri: `${url.pathname.replace(/\.json$/, "")}/${sid}.json` };
        res.writeHead(201, { "Content-Type": "application/json" });
        res.end(JSON.stringify(body));
        return;
      }
    }
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => handle(req, res, Buffer.concat(chunks).toString("utf8")));
    req.on("error", () => undefined);
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    setMode(m) {
      mode = m;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
