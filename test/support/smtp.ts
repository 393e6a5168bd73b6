/**
 * A real SMTP server on 127.0.0.1 (random port) for tests, built on `smtp-server`.
 *
 * It records, per accepted message, the envelope (MAIL FROM, RCPT TO), the raw bytes and
 * the mailparser parse, plus every TCP connection and AUTH attempt. Its behaviour can be
 * changed at any time with `setBehaviour()` to reject RCPT TO / DATA, drop the connection
 * at a given point, or stall. `close()` ends everything immediately.
 */
import type { AddressInfo, Socket } from "node:net";
import { simpleParser, type ParsedMail } from "mailparser";
import { SMTPServer, type SMTPServerSession } from "smtp-server";

export interface SmtpBehaviour {
  /** Answer RCPT TO with 550 for every recipient (true) or for these addresses. */
  rejectRcpt?: boolean | string[];
  /** Answer MAIL FROM with this code (e.g. 550). */
  rejectMailFrom?: number;
  /** Answer the end of DATA with this code (e.g. 550 or 451) after recording the message. */
  rejectData?: number;
  /** Destroy the TCP connection as soon as it is accepted (before the greeting). */
  dropOnConnect?: boolean;
  /** Never send the greeting. */
  stallGreeting?: boolean;
  /** Destroy the connection when MAIL FROM arrives (before any data). */
  dropOnMailFrom?: boolean;
  /** Destroy the connection after the first chunk of message data. */
  dropMidData?: boolean;
  /** Receive the whole message but never answer the final dot. */
  stallData?: boolean;
}

export interface SmtpServerOptions {
  /** Require AUTH with these credentials (PLAIN/LOGIN over the plain connection). */
  auth?: { user: string; pass: string };
  /** Offer STARTTLS (smtp-server's built-in self-signed certificate). Default false. */
  starttls?: boolean;
  /** Implicit TLS (smtps). Default false. */
  secure?: boolean;
  /** Advertise PIPELINING. Default true. */
  pipelining?: boolean;
  behaviour?: SmtpBehaviour;
}

export interface ReceivedMail {
  mailFrom: string;
  rcptTo: string[];
  raw: Buffer;
  parsed: ParsedMail;
  /** The authenticated user name, if the client logged in. */
  user?: string;
  /** True when the session ran over TLS (smtps or after STARTTLS). */
  secure: boolean;
}

export interface TestSmtpServer {
  readonly port: number;
  /** `smtp[s]://[user:pass@]127.0.0.1:port` plus `tls.rejectUnauthorized=false` when TLS is on offer. */
  url(credentials?: { user: string; pass: string }): string;
  /** Messages whose data was fully received (also those then rejected or stalled). */
  readonly messages: ReceivedMail[];
  /** Number of TCP connections accepted so far. */
  readonly connectionCount: number;
  readonly authAttempts: { user: string; ok: boolean }[];
  setBehaviour(b: SmtpBehaviour): void;
  close(): Promise<void>;
}

function smtpError(code: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode: code });
}

export async function startSmtpServer(options: SmtpServerOptions = {}): Promise<TestSmtpServer> {
  let behaviour: SmtpBehaviour = { ...(options.behaviour ?? {}) };
  const messages: ReceivedMail[] = [];
  const authAttempts: { user: string; ok: boolean }[] = [];
  const sockets = new Set<Socket>();
  let connectionCount = 0;

  const socketOf = (session: SMTPServerSession): Socket | undefined =>
    [...sockets].find((s) => s.remotePort === session.remotePort);

  const disabled: string[] = [];
  if (!options.auth) disabled.push("AUTH");
  if (!options.starttls && !options.secure) disabled.push("STARTTLS");

  const server = new SMTPServer({
    secure: options.secure ?? false,
    logger: false,
    disabledCommands: disabled,
    authOptional: !options.auth,
    allowInsecureAuth: true,
    hidePIPELINING: options.pipelining === false,
    disableReverseLookup: true,
    closeTimeout: 50,
    socketTimeout: 60_000,
    onConnect(_session, callback) {
      if (behaviour.stallGreeting) return; // never call back: no greeting
      callback();
    },
    onAuth(auth, _session, callback) {
      const ok = !!options.auth && auth.username === options.auth.user && auth.password === options.auth.pass;
      authAttempts.push({ user: auth.username ?? "", ok });
      if (!ok) return callback(smtpError(535, "Authentication failed"));
      callback(null, { user: auth.username });
    },
    onMailFrom(_address, session, callback) {
      if (behaviour.dropOnMailFrom) {
        socketOf(session)?.destroy();
        return;
      }
      if (behaviour.rejectMailFrom) return callback(smtpError(behaviour.rejectMailFrom, "Sender refused"));
      callback();
    },
    onRcptTo(address, _session, callback) {
      const r = behaviour.rejectRcpt;
      if (r === true || (Array.isArray(r) && r.includes(address.address))) {
        return callback(smtpError(550, "No such user here"));
      }
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      let dropped = false;
      stream.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        if (behaviour.dropMidData && !dropped) {
          dropped = true;
          socketOf(session)?.destroy();
        }
      });
      stream.on("error", () => undefined);
      stream.on("end", () => {
        if (dropped) return;
        const raw = Buffer.concat(chunks);
        simpleParser(raw)
          .then((parsed) => {
            const env = session.envelope;
            messages.push({
              mailFrom: env.mailFrom ? env.mailFrom.address : "",
              rcptTo: env.rcptTo.map((a) => a.address),
              raw,
              parsed,
              ...(session.user !== undefined ? { user: String(session.user) } : {}),
              secure: session.secure,
            });
          })
          .catch(() => undefined)
          .finally(() => {
            if (behaviour.stallData) return; // never answer the final dot
            if (behaviour.rejectData) return callback(smtpError(behaviour.rejectData, "Message refused"));
            callback(null, "Queued as TESTQUEUEID");
          });
      });
    },
  });
  server.on("error", () => undefined);
  server.server.on("connection", (socket: Socket) => {
    connectionCount++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    if (behaviour.dropOnConnect) socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    server.server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.server.off("error", reject);
      resolve();
    });
  });
  const port = (server.server.address() as AddressInfo).port;
  const tlsOnOffer = !!options.starttls || !!options.secure;

  return {
    port,
    url(credentials) {
      const scheme = options.secure ? "smtps" : "smtp";
      const auth = credentials ? `${encodeURIComponent(credentials.user)}:${encodeURIComponent(credentials.pass)}@` : "";
      const query = tlsOnOffer ? "?tls.rejectUnauthorized=false" : "";
      return `${scheme}://${auth}127.0.0.1:${port}${query}`;
    },
    messages,
    get connectionCount() {
      return connectionCount;
    },
    authAttempts,
    setBehaviour(b) {
      behaviour = { ...b };
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
