/**
 * Cross-process mutual exclusion for one machine, reachable only by the home's owner.
 *
 * Every lock lives in `$SIGIL_HOME/locks/` (a 0700 directory inside the 0700 home), so no other
 * local user can see, create, connect to or delete anything there. (Abstract Unix sockets, used
 * before, are a machine-wide namespace: any user could bind a lock's name first and block sigil.)
 *
 * A lock named N is the directory entry `l.<hash of N>`: a hard link to its holder's listening
 * Unix socket, which the holder bound beforehand under a private name `t.<random>`.
 * - Take: `link(t, l)` — atomic, and it fails with EEXIST while someone holds the lock. The link is
 *   made only to a socket that already listens, so a lock whose connect is refused belongs to a
 *   dead process.
 * - Wait: connect to `l`; the holder keeps the connection until it releases (it closes it then),
 *   which wakes the waiter at once; a short timer is the backstop.
 * - Release: unlink `l`, then close the waiters' connections. The socket keeps listening under its
 *   private name and is reused for the next lock this process takes (a take is then one `link`,
 *   a release one `unlink`).
 * - Liveness: the kernel closes a dead holder's socket, so connecting to its stale `l` is refused
 *   (ECONNREFUSED). Removing that stale link is serialised by the takeover lock below and re-checked
 *   under it, so a lock taken meanwhile by a live process is never removed.
 * - The takeover lock is a sequence of generations `k.1`, `k.2`, … each created once by `link`
 *   (EEXIST to everyone but one) only after the previous generation was seen not to listen;
 *   generations are never deleted, so the newest is the only one that can be held, and a dead
 *   holder's generation is simply superseded. One entry is left per takeover (i.e. per lock held by
 *   a process that crashed) — a few bytes of directory.
 * A process that exits normally unlinks its entries (an 'exit' hook), so only a crash leaves a stale
 * lock behind, and the next taker clears it (with any dead private names it finds).
 *
 * Inside one process, waiters for the same name queue on a promise chain so only one of them
 * contends with other processes at a time.
 */
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";

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
/** Listening sockets kept for reuse once their lock is released. */
const MAX_SPARE = 8;
/** A Unix socket address holds at most 107 bytes; longer directories are reached through /proc/self/fd. */
const MAX_SOCKET_PATH = 100;

/** Directory entries this process owns (locks held, private socket names), unlinked on a normal exit. */
const owned = new Set<string>();
let exitHook = false;
function own(file: string): void {
  owned.add(file);
  if (!exitHook) {
    exitHook = true;
    process.on("exit", () => {
      for (const f of owned) unlinkQuietly(f);
    });
  }
}

function unlinkQuietly(file: string): void {
  owned.delete(file);
  try {
    fs.unlinkSync(file);
  } catch {
    /* already gone */
  }
}

type Probe = "live" | "refused" | "absent" | "busy";

/** The locks directory: created 0700, refused if anyone but this user could reach into it. */
class LockDir {
  private addrPrefix?: string;

  constructor(readonly dir: string) {}

  /** The prefix for socket addresses (the directory itself, or a /proc/self/fd alias when it is too long). */
  prefix(): string {
    if (this.addrPrefix) return this.addrPrefix;
    // The home may not exist yet where only locks need it (an instance's local home on PostgreSQL).
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const home = fs.statSync(path.dirname(this.dir));
    if ((home.mode & 0o022) !== 0) {
      throw new Error(`${path.dirname(this.dir)} is writable by other users; make it private (chmod 700) so they cannot replace its locks`);
    }
    const st = fs.lstatSync(this.dir);
    const uid = process.geteuid?.() ?? st.uid;
    if (!st.isDirectory() || st.uid !== uid) throw new Error(`the lock directory ${this.dir} is not a directory owned by this user`);
    if ((st.mode & 0o077) !== 0) fs.chmodSync(this.dir, 0o700);
    if (this.dir.length + 40 <= MAX_SOCKET_PATH) {
      this.addrPrefix = this.dir + "/";
    } else {
      const fd = fs.openSync(this.dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      this.addrPrefix = `/proc/self/fd/${fd}/`;
    }
    return this.addrPrefix;
  }

  file(entry: string): string {
    return path.join(this.dir, entry);
  }

  address(entry: string): string {
    return this.prefix() + entry;
  }

  /** link(from, to): true, or false when `to` exists. */
  link(from: string, to: string): boolean {
    try {
      fs.linkSync(this.file(from), this.file(to));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw err;
    }
  }

  /**
   * Connects to `entry`: "live" if someone listens there (with `waitMs`, stays connected until they
   * close or `waitMs` passes), "refused" if its socket is dead, "absent" if there is no such entry,
   * "busy" otherwise (e.g. a full backlog).
   */
  probe(entry: string, waitMs = 0): Promise<Probe> {
    return new Promise((resolve) => {
      let done = false;
      let result: Probe = "busy";
      const finish = (): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        resolve(result);
      };
      const timer = setTimeout(finish, waitMs > 0 ? waitMs : 1000);
      const sock = net.connect(this.address(entry));
      sock.on("connect", () => {
        result = "live";
        if (waitMs <= 0) finish();
      });
      sock.on("error", (err: NodeJS.ErrnoException) => {
        if (result !== "live") result = err.code === "ECONNREFUSED" ? "refused" : err.code === "ENOENT" ? "absent" : "busy";
        finish();
      });
      sock.on("close", finish);
    });
  }
}

/** A listening socket under a private name; it holds at most one lock at a time. */
class Listener {
  readonly waiters = new Set<net.Socket>();
  /** Called when someone connects to the lock this socket holds (they wait for it). */
  onWaiter?: () => void;
  private constructor(
    readonly d: LockDir,
    readonly server: net.Server,
    readonly name: string,
  ) {}

  static async open(d: LockDir): Promise<Listener> {
    const name = "t." + randomBytes(12).toString("hex");
    const server = net.createServer();
    const l = new Listener(d, server, name);
    server.on("connection", (sock) => {
      sock.on("error", () => {});
      l.waiters.add(sock);
      sock.on("close", () => l.waiters.delete(sock));
      l.onWaiter?.();
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(d.address(name), () => {
        server.removeListener("error", reject);
        resolve();
      });
    });
    own(d.file(name));
    server.on("error", () => {});
    server.unref();
    return l;
  }

  /** Wakes everyone waiting on the lock this socket held. */
  wake(): void {
    this.onWaiter = undefined;
    for (const s of this.waiters) s.destroy();
  }

  close(): void {
    this.wake();
    unlinkQuietly(this.d.file(this.name));
    this.server.close();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `fn` holding the takeover lock: the next generation `k.<g+1>` after the newest `k.<g>`,
 * taken only once `k.<g>` does not listen (released or dead). See the file comment.
 */
async function withTakeover<T>(d: LockDir, deadline: number, name: string, fn: () => Promise<T>): Promise<T> {
  let l = await Listener.open(d);
  try {
    for (;;) {
      let g = 0;
      for (const e of fs.readdirSync(d.dir)) {
        const m = /^k\.(\d{1,15})$/.exec(e);
        if (m) g = Math.max(g, Number(m[1]));
      }
      for (;;) {
        const state = g === 0 ? "absent" : await d.probe(`k.${g}`, Math.min(250, Math.max(1, deadline - Date.now())));
        if (state === "live" || state === "busy") break; // it was held: look again
        let linked: boolean;
        try {
          linked = d.link(l.name, `k.${g + 1}`);
        } catch (err) {
          // Another process's sweep removed this socket's private name (it refused connections
          // between bind and listen): take a fresh socket and look again, as acquire does.
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
          l.close();
          l = await Listener.open(d);
          break;
        }
        if (linked) return await fn();
        g++;
      }
      if (Date.now() > deadline) throw new LockTimeoutError(name);
      await sleep(1);
    }
  } finally {
    l.close(); // the generation stays, refusing connections: the next one may be taken
  }
}

/** The locks of the home at `home` (its `locks/` directory). */
export function createLocks(home: string): Locks {
  const d = new LockDir(path.join(home, "locks"));
  const tails = new Map<string, Promise<unknown>>();
  const spares: Listener[] = [];

  const entryOf = (name: string): string => "l." + createHash("sha256").update(name).digest("hex").slice(0, 32);

  interface Held {
    l: Listener;
    entry: string;
  }

  async function acquire(name: string, timeoutMs: number, onWaiter?: () => void): Promise<Held> {
    d.prefix();
    const entry = entryOf(name);
    const deadline = Date.now() + timeoutMs;
    let l = spares.pop() ?? (await Listener.open(d));
    try {
      for (;;) {
        let linked: boolean;
        try {
          linked = d.link(l.name, entry);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
          l.close(); // its private name was swept (see sweep): take a fresh socket
          l = await Listener.open(d);
          continue;
        }
        if (linked) {
          own(d.file(entry));
          l.onWaiter = onWaiter;
          return { l, entry };
        }
        if (Date.now() > deadline) throw new LockTimeoutError(name);
        const state = await d.probe(entry, Math.min(250, Math.max(1, deadline - Date.now())));
        if (state === "refused") {
          // The holder died without unlinking. Clear its link — re-checked under the takeover lock,
          // which every remover holds, so a link taken meanwhile by a live process is never removed.
          await withTakeover(d, deadline, name, async () => {
            if ((await d.probe(entry)) === "refused") unlinkQuietly(d.file(entry));
            await sweep();
          });
        } else if (state === "busy") {
          await sleep(2);
        }
      }
    } catch (err) {
      l.close();
      throw err;
    }
  }

  /**
   * Removes private names of dead processes (left by a crash). A name refusing connections belongs
   * to a closed socket — or to one between bind and listen, which then finds its name gone when it
   * links and starts over (see acquire) — so removing it never breaks a lock.
   */
  async function sweep(): Promise<void> {
    for (const e of fs.readdirSync(d.dir)) {
      if (e.startsWith("t.") && !owned.has(d.file(e)) && (await d.probe(e)) === "refused") unlinkQuietly(d.file(e));
    }
  }

  function release(h: Held): void {
    // Unlink first, then wake the waiters: while the link exists, its holder answers.
    unlinkQuietly(d.file(h.entry));
    h.l.wake();
    if (spares.length < MAX_SPARE) spares.push(h.l);
    else h.l.close();
  }

  /**
   * Locks kept after their section ended. Even a cheap take (a link) and release (an unlink) cost
   * two file system calls; a process that commits to the same chain again and again (a session)
   * would pay them twice per audited call. So a released lock stays held, idle, until someone else
   * wants it — a waiter connects, which hands it over at once (after the current section, if one is
   * running) — or until it has been idle for KEEP_IDLE_MS. A lock that was handed over to a waiter in
   * the last CONTENDED_MS is released at once as before, so processes taking turns pay no hand-over.
   * Mutual exclusion is unchanged: whoever holds the link holds the lock, and a dead holder's link
   * stops answering.
   */
  interface Kept {
    held?: Held;
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
    if (h.held) release(h.held);
    h.held = undefined;
  }

  return {
    async hold(name: string): Promise<void> {
      await acquire(name, 1000);
    },
    async isHeld(name: string): Promise<boolean> {
      d.prefix();
      return (await d.probe(entryOf(name))) === "live";
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
          fresh.held = await acquire(name, timeoutMs, () => {
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
