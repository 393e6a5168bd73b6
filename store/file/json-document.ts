/**
 * A lowdb adapter for one JSON document, written durably (temp → fsync → rename → fsync dir) so a
 * crash leaves either the old or the new document, never a torn one. Reading a missing document
 * gives null; a document that does not parse is an error, never an empty default.
 */
import type { Adapter } from "lowdb";
import { type FileLayer, writeFileDurable } from "../../src/util/fsx.js";
import { StoreError } from "../types.js";

export class DurableJsonDocument<T> implements Adapter<T> {
  constructor(
    private readonly files: FileLayer,
    readonly file: string,
  ) {}

  async read(): Promise<T | null> {
    let text: Buffer;
    try {
      text = await this.files.readFile(this.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw new StoreError(`cannot read ${this.file}`, "unreadable", { cause: err });
    }
    try {
      return JSON.parse(text.toString("utf8")) as T;
    } catch (err) {
      throw new StoreError(`${this.file} is not valid JSON`, "unreadable", { cause: err });
    }
  }

  async write(data: T): Promise<void> {
    await writeFileDurable(this.files, this.file, JSON.stringify(data, null, 1) + "\n");
  }
}
