/**
 * Connections to PostgreSQL for the store: three small pools, error classification and the
 * transaction helper the store's operations share.
 *
 * Three pools, so that nothing can wait for a connection that its own caller holds: an identity
 * admin lock (`locks`) may run audit commits (`chain`) and registry reads (`main`); an audit
 * commit may read the registry (`main`, for a signing key); `main` waits on nothing. One pool
 * would deadlock as soon as every connection held a lock while its holder wanted one more.
 *
 * Session settings bound every wait: `statement_timeout` (a lock wait included) and
 * `idle_in_transaction_session_timeout` (a frozen instance cannot hold a chain forever). Both can
 * be overridden in the URL (`?statement_timeout=5000`), as can any libpq-style parameter pg reads.
 */
import { createRequire } from "node:module";
import type pg from "pg";
import { StoreError } from "../types.js";

let loaded: typeof pg | undefined;
/**
 * The `pg` driver, loaded on first use: every `sigil` process imports this module, and loading pg
 * costs ~50 ms of start-up that only a process with a PostgreSQL store needs. (CommonJS, so it
 * loads synchronously; the ES entry point of pg wraps this same module.)
 */
export function pgLib(): typeof pg {
  return (loaded ??= createRequire(import.meta.url)("pg") as typeof pg);
}

export type PoolName = "main" | "chain" | "locks";

export interface Conn {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
  /** Returns the connection; with an error (or `true`) it is destroyed instead of reused. */
  release(err?: unknown): void;
}

const POOL_SIZES: Record<PoolName, number> = { main: 8, chain: 8, locks: 2 };

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    u.search = "";
    return u.toString();
  } catch {
    return "postgres://…";
  }
}

export function isPostgresUrl(url: string | undefined): url is string {
  return typeof url === "string" && /^postgres(ql)?:\/\//i.test(url.trim());
}

const CONNECTION_ERRNO = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN"]);

/**
 * True when the error means "the connection (or the server) went away", as opposed to the server
 * answering with an error: the transaction is certainly rolled back unless COMMIT was in flight.
 */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  const code = typeof e?.code === "string" ? e.code : "";
  if (code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03" || code === "53300") return true;
  if (CONNECTION_ERRNO.has(code)) return true;
  const msg = typeof e?.message === "string" ? e.message : "";
  return /Connection terminated|connection error|not queryable|Client was closed|timeout exceeded when trying to connect/i.test(msg);
}

/** A statement timeout or lock timeout: the server cancelled our statement; nothing was committed. */
export function isTimeout(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === "57014" || code === "55P03";
}

/** An error from the server or the connection (as opposed to one thrown by a caller's callback). */
export function isDatabaseError(err: unknown): boolean {
  return err instanceof pgLib().DatabaseError || isConnectionError(err);
}

export function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown })?.code === "23505";
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function describe(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  return `${typeof e?.code === "string" ? e.code + " " : ""}${typeof e?.message === "string" ? e.message : String(err)}`;
}

export class Database {
  private readonly pools: Record<PoolName, pg.Pool>;
  private lastLog = 0;
  /** How long an operation keeps retrying while the server is unreachable (a restart, a failover). */
  readonly retryMs: number;

  constructor(readonly url: string, opts: { retryMs?: number } = {}) {
    this.retryMs = opts.retryMs ?? 5_000;
    const make = (name: PoolName): pg.Pool => {
      const pool = new (pgLib().Pool)({
        connectionString: url,
        max: POOL_SIZES[name],
        idleTimeoutMillis: 10_000,
        connectionTimeoutMillis: 5_000,
        allowExitOnIdle: true,
        keepAlive: true,
        application_name: `sigil-${name}`,
        statement_timeout: 15_000,
        idle_in_transaction_session_timeout: 60_000,
      } as pg.PoolConfig);
      // An idle connection dropped by the server (restart, pg_terminate_backend) must not crash
      // the process: the pool discards it and the next checkout connects afresh.
      pool.on("error", (err) => this.log(`an idle ${name} connection was lost`, err));
      return pool;
    };
    this.pools = { main: make("main"), chain: make("chain"), locks: make("locks") };
  }

  log(what: string, err: unknown): void {
    const now = Date.now();
    if (now - this.lastLog < 1000) return; // one line per burst, not one per connection
    this.lastLog = now;
    process.stderr.write(`sigil: postgres: ${what}: ${describe(err).slice(0, 200)}\n`);
  }

  /** Checks out a connection. A connection error while it is checked out rejects the running query (never crashes). */
  async checkout(name: PoolName): Promise<Conn> {
    const client = await this.pools[name].connect();
    const onError = (err: Error): void => this.log(`a ${name} connection was lost`, err);
    client.on("error", onError);
    let released = false;
    return {
      query: (text, values) => client.query(text, values as unknown[]),
      release: (err) => {
        if (released) return;
        released = true;
        client.removeListener("error", onError);
        client.release(err ? (err instanceof Error ? err : true) : undefined);
      },
    };
  }

  /** One statement on the main pool, retried while the server is unreachable. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    return this.retrying(async () => {
      const c = await this.checkout("main");
      try {
        const r = await c.query<R>(text, values);
        c.release();
        return r;
      } catch (err) {
        c.release(err);
        throw err;
      }
    });
  }

  /**
   * Runs `fn` in a transaction on `pool`. Connection errors before COMMIT is sent roll everything
   * back, so the whole transaction is retried (fn runs again on fresh data). An error during COMMIT
   * leaves the outcome unknown: it is reported, never retried.
   */
  async tx<T>(pool: PoolName, fn: (c: Conn) => Promise<T>): Promise<T> {
    return this.retrying(async () => {
      const c = await this.checkout(pool);
      let committing = false;
      try {
        await c.query("BEGIN");
        const value = await fn(c);
        committing = true;
        await c.query("COMMIT");
        c.release();
        return value;
      } catch (err) {
        if (!committing && !isConnectionError(err)) {
          await c.query("ROLLBACK").then(
            () => c.release(),
            (e: unknown) => c.release(e),
          );
        } else {
          c.release(err);
        }
        if (committing && isConnectionError(err)) {
          throw new StoreError("the database connection was lost while committing; the outcome is unknown", "unavailable", { cause: err });
        }
        throw err;
      }
    });
  }

  /** Retries `op` on connection errors until `retryMs` has passed; maps failures to StoreError. */
  async retrying<T>(op: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.retryMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        if (err instanceof StoreError) throw err;
        if (isConnectionError(err) && Date.now() < deadline) {
          this.log("the database is unreachable, retrying", err);
          await sleep(Math.min(50 * 2 ** attempt, 500));
          continue;
        }
        throw isDatabaseError(err) ? asStoreError(err) : err; // a caller's own error passes through
      }
    }
  }

  async close(): Promise<void> {
    await Promise.all(Object.values(this.pools).map((p) => p.end().catch(() => {})));
  }
}

/** Any database failure as a StoreError the callers already handle (`unavailable`). */
export function asStoreError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  if (isTimeout(err)) return new StoreError("the database did not answer in time (statement timeout)", "unavailable", { cause: err });
  if (isConnectionError(err)) return new StoreError("the database is unreachable", "unavailable", { cause: err });
  return new StoreError(`the database refused the operation (${describe(err).slice(0, 120)})`, "unavailable", { cause: err });
}
