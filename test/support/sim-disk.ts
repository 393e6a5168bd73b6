/**
 * A file layer that models what survives a power cut: it passes every operation through to the
 * real filesystem (the volatile view) and tracks what has been made durable — file contents at
 * their last fsync/fdatasync, directory entries at their directory's last fsync. `crash()` rewinds
 * the real files to that durable state, losing every write that was not fsync'd.
 */
import { promises as fsp, readFileSync, existsSync } from "node:fs";
import path from "node:path";
import type { FileHandleLike, FileLayer } from "../../dist/src/util/fsx.js";

interface Node {
  durable: Buffer | null;
  path: string;
}

export class SimDisk {
  private nextId = 1;
  private readonly nodes = new Map<number, Node>();
  private readonly names = new Map<string, number>();
  private readonly durableNames = new Map<string, number>();
  syncs = 0;

  constructor(private readonly root: string) {}

  private known(p: string): number | undefined {
    if (this.names.has(p)) return this.names.get(p);
    if (!p.startsWith(this.root) || !existsSync(p)) return undefined;
    // A file that existed before the simulation started is durable as it is.
    let st;
    try {
      st = readFileSync(p);
    } catch {
      return undefined; // a directory
    }
    const id = this.nextId++;
    this.nodes.set(id, { durable: st, path: p });
    this.names.set(p, id);
    this.durableNames.set(p, id);
    return id;
  }

  layer(opts: { dropSyncs?: boolean } = {}): FileLayer {
    const self = this;
    const syncNode = async (id: number): Promise<void> => {
      if (opts.dropSyncs) return;
      self.syncs++;
      const n = self.nodes.get(id)!;
      n.durable = await fsp.readFile(n.path);
    };
    const syncDir = (dir: string): void => {
      if (opts.dropSyncs) return;
      self.syncs++;
      for (const p of [...self.durableNames.keys()]) if (path.dirname(p) === dir && !self.names.has(p)) self.durableNames.delete(p);
      for (const [p, id] of self.names) if (path.dirname(p) === dir) self.durableNames.set(p, id);
    };
    return {
      async open(file, flags, mode) {
        let isDir = false;
        try {
          isDir = (await fsp.stat(file)).isDirectory();
        } catch {
          /* new file */
        }
        const fh = await fsp.open(file, flags, mode);
        if (isDir) {
          return { ...(fh as unknown as FileHandleLike), sync: async () => syncDir(file), datasync: async () => syncDir(file), close: () => fh.close() } as FileHandleLike;
        }
        let id = self.known(file);
        if (id === undefined) {
          id = self.nextId++;
          self.nodes.set(id, { durable: null, path: file });
          self.names.set(file, id);
        }
        const nodeId = id;
        return {
          write: (b, o, l, p) => fh.write(b, o, l, p),
          read: (b, o, l, p) => fh.read(b, o, l, p),
          stat: () => fh.stat(),
          truncate: (len) => fh.truncate(len),
          close: () => fh.close(),
          datasync: () => syncNode(nodeId),
          sync: () => syncNode(nodeId),
        };
      },
      readFile: (f) => (self.known(f), fsp.readFile(f)),
      async rename(from, to) {
        const id = self.known(from);
        await fsp.rename(from, to);
        self.names.delete(from);
        if (id !== undefined) {
          self.names.set(to, id);
          self.nodes.get(id)!.path = to;
        }
      },
      async unlink(f) {
        self.known(f);
        await fsp.unlink(f);
        self.names.delete(f);
      },
      mkdir: async (d, mode) => {
        await fsp.mkdir(d, { recursive: true, mode });
      },
      readdir: (d) => fsp.readdir(d),
      stat: async (f) => {
        self.known(f);
        const s = await fsp.stat(f);
        return { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino, mode: s.mode };
      },
    };
  }

  /** Loses everything that was not made durable. */
  async crash(): Promise<void> {
    const paths = new Set([...this.names.keys(), ...this.durableNames.keys()]);
    for (const p of paths) {
      const id = this.durableNames.get(p);
      if (id === undefined) {
        await fsp.rm(p, { force: true });
      } else {
        await fsp.writeFile(p, this.nodes.get(id)!.durable ?? Buffer.alloc(0));
      }
    }
  }
}
