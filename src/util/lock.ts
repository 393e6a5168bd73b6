/**
 * Cross-process mutual exclusion for one machine.
 *
 * A lock is a Linux abstract-namespace Unix socket: whoever manages to `listen` on the name holds
 * it, and the kernel frees the name the moment the holding process dies (SIGKILL included), so a
 * crashed holder can never leave a stale lock behind. Waiters connect to the holder and retry when
 * that connection closes (the holder drops its listeners on release), with a short timer as a
 * backstop. Inside one process, waiters for the same name queue on a promise chain so only one of
 * them contends with other processes at a time.
 *
 * Names are scoped by a namespace (the realpath of the home), hashed so any string is safe.
 */
import { createHash } from "node:crypto";
import net from "node:net";

export class LockTimeoutError extends Error {
  constructor(readonly lockName: string) {
    super(`timed out waiting for lock ${lockName}`);
  }
}

export interface Locks {
  /** Runs `fn` while holding the named lock (exclusive across processes of this machine). */
  withLock<T>(name: string, fn: () => Promise<T>, timeoutMs?: number): Promise<T>;
  /** Holds the named lock until the process exits (a liveness beacon). */
  hold(name: string): Promise<void>;
  /** True if some live process holds the named lock right now. */
  isHeld(name: string): Promise<boolean>;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export function createLocks(namespace: string): Locks {
  const tails = new Map<string, Promise<unknown>>();

  const addressOf = (name: string): string =>
    "\0sigil-" + createHash("sha256").update(namespace).update("\0").update(name).digest("hex").slice(0, 40);

  async function acquire(name: string, timeoutMs: number): Promise<net.Server> {
    const address = addressOf(name);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const server = net.createServer((sock) => {
        // A waiter: keep it until release, then its 'close' wakes it up.
        sock.on("error", () => {});
        held.add(sock);
        sock.on("close", () => held.delete(sock));
      });
      const held = new Set<net.Socket>();
      (server as net.Server & { sigilWaiters?: Set<net.Socket> }).sigilWaiters = held;
      const ok = await new Promise<boolean>((resolve, reject) => {
        server.once("error", (err: NodeJS.ErrnoException) => (err.code === "EADDRINUSE" ? resolve(false) : reject(err)));
        server.listen(address, () => resolve(true));
      });
      if (ok) {
        server.unref();
        return server;
      }
      if (Date.now() > deadline) throw new LockTimeoutError(name);
      await waitForRelease(address, Math.min(250, Math.max(1, deadline - Date.now())));
    }
  }

  function waitForRelease(address: string, maxMs: number): Promise<void> {
    return new Promise((resolve) => {
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        resolve();
      };
      const timer = setTimeout(finish, maxMs);
      const sock = net.connect(address);
      sock.on("error", finish);
      sock.on("close", finish);
    });
  }

  function release(server: net.Server): void {
    const waiters = (server as net.Server & { sigilWaiters?: Set<net.Socket> }).sigilWaiters;
    server.close();
    if (waiters) for (const s of waiters) s.destroy();
  }

  return {
    async hold(name: string): Promise<void> {
      await acquire(name, 1000);
    },
    async isHeld(name: string): Promise<boolean> {
      const server = net.createServer();
      const free = await new Promise<boolean>((resolve) => {
        server.once("error", () => resolve(false));
        server.listen(addressOf(name), () => resolve(true));
      });
      if (free) await new Promise<void>((r) => server.close(() => r()));
      return !free;
    },
    async withLock<T>(name: string, fn: () => Promise<T>, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
      const previous = tails.get(name) ?? Promise.resolve();
      let releaseLocal!: () => void;
      const mine = new Promise<void>((r) => (releaseLocal = r));
      const tail = previous.then(() => mine);
      tails.set(name, tail);
      try {
        await previous;
        const server = await acquire(name, timeoutMs);
        try {
          return await fn();
        } finally {
          release(server);
        }
      } finally {
        releaseLocal();
        if (tails.get(name) === tail) tails.delete(name);
      }
    },
  };
}
