/**
 * Listening on a port, for `sigil serve --http` and `sigil start`: a port that cannot be used is
 * reported as one sentence that says what to do (not a raw EADDRINUSE), and `sigil start` checks
 * the port before it creates anything.
 */
import { createServer } from "node:net";
import { SigilError } from "../errors.js";

/** A listen error as one sentence that says what to do; other errors unchanged. */
export function listenError(err: unknown, host: string, port: number): unknown {
  const code = (err as { code?: string }).code;
  if (code === "EADDRINUSE") {
    return new SigilError(
      "port_in_use",
      `port ${port} on ${host} is already in use (another sigil or another program listens there); stop it, or choose another port with --port (e.g. --port ${port === 65535 ? port - 1 : port + 1}).`,
      { cause: err },
    );
  }
  if (code === "EACCES") return new SigilError("port_denied", `this user may not listen on port ${port} on ${host}; choose a port above 1023 with --port.`, { cause: err });
  if (code === "EADDRNOTAVAIL" || code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return new SigilError("bad_host", `${host} is not an address of this machine; choose another with --host (e.g. 127.0.0.1).`, { cause: err });
  }
  return err;
}

/** Throws listenError's sentence unless `host:port` can be listened on right now (port 0: always). */
export async function checkPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once("error", (err) => reject(listenError(err, host, port)));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}
