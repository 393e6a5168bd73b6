/**
 * Audit chains in PostgreSQL: `sigil_audit_entries` holds each entry's line verbatim, keyed by
 * (identity, seq); `sigil_chain_heads` holds each chain's last seq and hash.
 *
 * `withChain` is one transaction: lock the chain's head row (`SELECT … FOR UPDATE`, so appends to
 * one identity are serialised across every instance), read the entries after the caller's cursor
 * (the cursor IS the last seq seen), let the caller build its entries, insert them and move the
 * head, COMMIT. Nothing is acknowledged before COMMIT returns; an error rolls everything back.
 *
 * Faults: a lost connection before the caller's function runs is retried on a fresh connection.
 * A lost connection while writing is resolved rather than guessed: on a fresh connection, under
 * the lock, if the head is our last entry the commit happened; if it is still where we started,
 * nothing happened and the same entries are written now (they were built on exactly that head);
 * otherwise the write is reported as failed. A statement timeout is reported at once.
 */
import { type AuditBackend, type ChainCursor, type ChainView, StoreError } from "../types.js";
import { type Conn, type Database, asStoreError, isConnectionError, isUniqueViolation, sleep } from "./db.js";

interface Head {
  seq: number;
  hash: string | null;
}

interface Parsed {
  seq: number;
  prev: string;
  hash: string;
}

const PAGE = 1000;

function parseEntryLine(line: string): Parsed {
  try {
    const e = JSON.parse(line) as Partial<Parsed>;
    if (typeof e.seq === "number" && typeof e.hash === "string" && typeof e.prev === "string") return { seq: e.seq, prev: e.prev, hash: e.hash };
  } catch {
    /* below */
  }
  throw new StoreError("an audit entry to append is malformed", "conflict");
}

export class PgAuditBackend implements AuditBackend {
  constructor(
    private readonly db: Database,
    /** Resolves when the schema is in place (migrations run on first use). */
    private readonly ready: () => Promise<unknown>,
  ) {}

  private async lockHead(c: Conn, identityId: string): Promise<Head> {
    const sel = "SELECT seq::int AS seq, hash FROM sigil_chain_heads WHERE identity_id = $1 FOR UPDATE";
    let r = await c.query<Head>(sel, [identityId]);
    if (r.rows.length === 0) {
      await c.query("INSERT INTO sigil_chain_heads (identity_id, seq, hash) VALUES ($1, 0, NULL) ON CONFLICT DO NOTHING", [identityId]);
      r = await c.query<Head>(sel, [identityId]);
    }
    return r.rows[0]!;
  }

  private async write(c: Conn, identityId: string, lines: string[], parsed: Parsed[]): Promise<void> {
    const last = parsed[parsed.length - 1]!;
    await c.query(
      `WITH ins AS (
         INSERT INTO sigil_audit_entries (identity_id, seq, line)
         SELECT $1, s, l FROM unnest($2::bigint[], $3::text[]) AS t(s, l)
       )
       UPDATE sigil_chain_heads SET seq = $4, hash = $5 WHERE identity_id = $1`,
      [identityId, parsed.map((p) => p.seq), lines, last.seq, last.hash],
    );
  }

  async withChain<T>(
    identityId: string,
    cursor: ChainCursor,
    fn: (view: ChainView) => Promise<{ lines: string[]; value: T }>,
  ): Promise<{ value: T; cursor: ChainCursor }> {
    await this.ready();
    // 1. lock the head and catch up (retried while the database is unreachable: fn has not run).
    const { c, head, view } = await this.db.retrying(async () => {
      const c = await this.db.checkout("chain");
      try {
        await c.query("BEGIN");
        const head = await this.lockHead(c, identityId);
        if (head.seq < cursor.position) {
          throw new StoreError(`the audit log of ${identityId} is shorter than what this process has seen`, "conflict");
        }
        const view: ChainView = { lines: [] };
        if (head.seq > cursor.position) {
          const r = await c.query<{ line: string }>(
            "SELECT line FROM sigil_audit_entries WHERE identity_id = $1 AND seq > $2 ORDER BY seq",
            [identityId, cursor.position],
          );
          view.lines = r.rows.map((row) => row.line);
        }
        return { c, head, view };
      } catch (err) {
        await this.abort(c, err);
        throw err;
      }
    });

    // 2. the caller decides what to append, holding the lock.
    let out: { lines: string[]; value: T };
    try {
      out = await fn(view);
    } catch (err) {
      await this.abort(c);
      throw err;
    }
    if (out.lines.length === 0) {
      await c.query("COMMIT").then(
        () => c.release(),
        (e: unknown) => c.release(e), // nothing was written; the lock is gone with the connection
      );
      return { value: out.value, cursor: { position: head.seq } };
    }

    // 3. append: the entries must continue the chain exactly where the head is.
    let parsed: Parsed[];
    try {
      parsed = out.lines.map(parseEntryLine);
    } catch (err) {
      await this.abort(c);
      throw err;
    }
    const continues = parsed.every(
      (p, i) => p.seq === head.seq + 1 + i && (i === 0 ? head.hash === null || p.prev === head.hash : p.prev === parsed[i - 1]!.hash),
    );
    if (!continues) {
      await this.abort(c);
      throw new StoreError(`the entries to append do not continue the audit log of ${identityId}`, "conflict");
    }
    const last = parsed[parsed.length - 1]!;
    const done = { value: out.value, cursor: { position: last.seq } };
    try {
      await this.write(c, identityId, out.lines, parsed);
      await c.query("COMMIT");
      c.release();
      return done;
    } catch (err) {
      if (!isConnectionError(err)) {
        await this.abort(c, err);
        if (isUniqueViolation(err)) throw new StoreError(`the audit log of ${identityId} already has entry ${parsed[0]!.seq}`, "conflict", { cause: err });
        throw asStoreError(err);
      }
      c.release(err);
      this.db.log("the connection was lost while appending to an audit chain; resolving", err);
      if (await this.resolve(identityId, head, last, out.lines, parsed)) return done;
      throw new StoreError("the audit log cannot be written (the database is unavailable)", "unavailable", { cause: err });
    }
  }

  /**
   * After a lost connection during an append: decides whether it committed, and writes it if it
   * certainly did not and the chain has not moved. True when the entries are in the chain.
   */
  private async resolve(identityId: string, from: Head, last: Parsed, lines: string[], parsed: Parsed[]): Promise<boolean> {
    const deadline = Date.now() + this.db.retryMs;
    for (let attempt = 0; Date.now() < deadline; attempt++) {
      let c: Conn | undefined;
      try {
        c = await this.db.checkout("chain");
        await c.query("BEGIN");
        const now = await this.lockHead(c, identityId);
        if (now.seq === last.seq && now.hash === last.hash) {
          await c.query("COMMIT");
          c.release();
          return true; // the first COMMIT did happen
        }
        if (now.seq === from.seq && now.hash === from.hash) {
          await this.write(c, identityId, lines, parsed);
          await c.query("COMMIT");
          c.release();
          return true;
        }
        await this.abort(c);
        return false; // another instance appended meanwhile: ours certainly did not commit
      } catch (err) {
        if (c) await this.abort(c, err);
        if (!isConnectionError(err)) return false;
        await sleep(Math.min(50 * 2 ** attempt, 500));
      }
    }
    return false;
  }

  private async abort(c: Conn, err?: unknown): Promise<void> {
    if (err !== undefined && isConnectionError(err)) return c.release(err);
    await c.query("ROLLBACK").then(
      () => c.release(),
      (e: unknown) => c.release(e),
    );
  }

  async readSnapshot(identityId: string): Promise<string | undefined> {
    await this.ready();
    const r = await this.db.query<{ snapshot: string }>("SELECT snapshot FROM sigil_chain_snapshots WHERE identity_id = $1", [identityId]);
    return r.rows[0]?.snapshot;
  }

  /** One upsert; an older snapshot never replaces a newer one another instance wrote. */
  async writeSnapshot(identityId: string, seq: number, text: string): Promise<void> {
    await this.ready();
    await this.db.query(
      `INSERT INTO sigil_chain_snapshots (identity_id, seq, snapshot) VALUES ($1, $2, $3)
       ON CONFLICT (identity_id) DO UPDATE SET seq = EXCLUDED.seq, snapshot = EXCLUDED.snapshot
       WHERE sigil_chain_snapshots.seq < EXCLUDED.seq`,
      [identityId, seq, text],
    );
  }

  /** The cursor is the last seq seen: the one before is the previous seq. */
  cursorBefore(cursor: ChainCursor): ChainCursor {
    return { position: cursor.position - 1 };
  }

  /** The cursor is the last seq seen: the entry with that seq. */
  async lineBefore(identityId: string, cursor: ChainCursor): Promise<string | undefined> {
    await this.ready();
    if (!Number.isSafeInteger(cursor.position) || cursor.position <= 0) return undefined;
    const r = await this.db.query<{ line: string }>("SELECT line FROM sigil_audit_entries WHERE identity_id = $1 AND seq = $2", [identityId, cursor.position]);
    return r.rows[0]?.line;
  }

  /** One query: the entries with seq at or below the cursor (the last seq seen), newest first. */
  async linesBefore(identityId: string, before: ChainCursor | undefined, max: number): Promise<Array<{ line: string; before: ChainCursor }>> {
    await this.ready();
    if (before !== undefined && (!Number.isSafeInteger(before.position) || before.position <= 0)) return [];
    const limit = Math.max(1, Math.min(Math.floor(max), 10_000));
    // Two statements, so that the seq bound is an index bound (an `$2 IS NULL OR …` would make a
    // generic plan filter every newer row of the identity instead).
    const r =
      before === undefined
        ? await this.db.query<{ seq: number; line: string }>("SELECT seq::int AS seq, line FROM sigil_audit_entries WHERE identity_id = $1 ORDER BY seq DESC LIMIT $2", [identityId, limit])
        : await this.db.query<{ seq: number; line: string }>("SELECT seq::int AS seq, line FROM sigil_audit_entries WHERE identity_id = $1 AND seq <= $2 ORDER BY seq DESC LIMIT $3", [identityId, before.position, limit]);
    return r.rows.map((row) => ({ line: row.line, before: { position: row.seq - 1 } }));
  }

  async *readLines(identityId: string): AsyncIterable<string> {
    await this.ready();
    let after = 0;
    for (;;) {
      const r = await this.db.query<{ seq: number; line: string }>(
        "SELECT seq::int AS seq, line FROM sigil_audit_entries WHERE identity_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        [identityId, after, PAGE],
      );
      for (const row of r.rows) yield row.line;
      if (r.rows.length < PAGE) return;
      after = r.rows[r.rows.length - 1]!.seq;
    }
  }
}
