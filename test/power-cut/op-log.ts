// The guests' operation log, shared by both workloads: one line per event, `<kind> <JSON>`,
// each fsynced before the next step, so that after a power cut the host reads every line that
// was acknowledged; a last line cut short by the cut is skipped as never acknowledged.
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';

export class OpLog {
  readonly #fd: number;
  constructor(path: string) {
    this.#fd = openSync(path, 'a');
  }
  /** Appends one line and fsyncs it: once this returns, the host can see it after any cut. */
  write(kind: string, value: unknown): void {
    writeSync(this.#fd, `${kind} ${JSON.stringify(value)}\n`);
    fsyncSync(this.#fd);
  }
  close(): void {
    closeSync(this.#fd);
  }
}

/** The log's complete lines, in order, as kind and parsed value. */
export function* logEntries(text: string): Generator<{ kind: string; value: any }> {
  for (const line of text.split('\n')) {
    const space = line.indexOf(' ');
    if (space < 0) continue;
    let value: any;
    try {
      value = JSON.parse(line.slice(space + 1));
    } catch {
      continue; // a line cut short by the power cut (never acknowledged)
    }
    yield { kind: line.slice(0, space), value };
  }
}
