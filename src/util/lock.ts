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
/** How long an idle lock stays kept by its last holder (see `Kept`), and how many at most. */
const KEEP_IDLE_MS = 25;
const MAX_KEPT = 64;
const CONTENDED_MS = 1000;

export function createLocks(namespace: string): Locks {
  const tails = new Map<string, Promise<unknown>>();

  const addressOf = (name: string): string =>
    "\0sigil-" + createHash("sha256").update(namespace).update("\0").update(name).digest("hex").slice(0, 40);

  async function acquire(name: string, timeoutMs: number, onWaiter?: () => void): Promise<net.Server> {
    const address = addressOf(name);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const server = net.createServer((sock) => {
        // A waiter: keep it until release, then its 'close' wakes it up.
        sock.on("error", () => {});
        held.add(sock);
        sock.on("close", () => held.delete(sock));
        onWaiter?.();
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

  /**
   * Locks kept after their section ended. Taking a lock costs a socket, a bind, a listen and a
   * close (~50 µs); a process that commits to the same chain again and again (a session) would pay
   * it twice per audited call. So a released lock stays held, idle, until someone else wants it —
   * a waiter connects, which hands it over at once (after the current section, if one is running) —
   * or until it has been idle for KEEP_IDLE_MS. A lock that was handed over to a waiter in the last
   * CONTENDED_MS is released at once as before, so processes taking turns pay no hand-over. Mutual exclusion is unchanged: whoever listens on
   * the name holds it, and the kernel still frees it if the process dies.
   */
  interface Kept {
    server?: net.Server;
    busy: boolean;
    contended: boolean;
    timer?: NodeJS.Timeout;
  }
  const kept = new Map<string, Kept>();
  /** When a waiter last asked for a lock: a lock that several processes take in turn is not kept. */
  const contendedAt = new Map<string, number>();

  function keep(name: string, h: Kept): void {
    kept.set(name, h);
    if (h.timer) h.timer.refresh();
    else h.timer = setTimeout(() => !h.busy && drop(name, h), KEEP_IDLE_MS).unref();
  }

  function drop(name: string, h: Kept): void {
    if (kept.get(name) === h) kept.delete(name);
    if (h.timer) clearTimeout(h.timer);
    h.timer = undefined;
    if (h.server) release(h.server);
    h.server = undefined;
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
        let h = kept.get(name);
        if (h) {
          h.busy = true;
        } else {
          const fresh: Kept = { busy: true, contended: false };
          fresh.server = await acquire(name, timeoutMs, () => {
            // Another process (or another Locks of this process) waits: hand over at once if idle.
            if (contendedAt.size > 1000) contendedAt.clear();
            contendedAt.set(name, Date.now());
            if (fresh.busy) fresh.contended = true;
            else drop(name, fresh);
          });
          h = fresh;
        }
        try {
          return await fn();
        } finally {
          h.busy = false;
          const recentlyContended = Date.now() - (contendedAt.get(name) ?? -Infinity) < CONTENDED_MS;
          if (h.contended || recentlyContended || (!kept.has(name) && kept.size >= MAX_KEPT)) drop(name, h);
          else keep(name, h);
        }
      } finally {
        releaseLocal();
        if (tails.get(name) === tail) tails.delete(name);
      }
    },
  };
}
