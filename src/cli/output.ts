// Output for people (aligned tables) and for programs (--json, bigints as decimal strings).
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2);
}

export function table(headers: readonly string[], rows: ReadonlyArray<readonly unknown[]>): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === undefined || c === null ? '-' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return `${cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n')}\n`;
}

export function keyValues(entries: ReadonlyArray<readonly [string, unknown]>): string {
  const width = Math.max(...entries.map(([k]) => k.length));
  return `${entries.map(([k, v]) => `${k.padEnd(width)}  ${v === undefined || v === null ? '-' : String(v)}`).join('\n')}\n`;
}

/** Bytes for people: 1.5 GiB. */
export function humanBytes(n: bigint): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** A line on stderr for steps that may take more than a second (stdout stays clean for --json). */
export function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}

// ---- colour: only on a terminal, never with --no-color or NO_COLOR (https://no-color.org)

let colorOff = false;

/** --no-color: no ANSI colour from here on (the logger included). */
export function disableColor(): void {
  colorOff = true;
}

/**
 * Whether to colour what goes to `stream`: not with --no-color, not when NO_COLOR is set (to
 * anything but the empty string); forced by FORCE_COLOR (anything but 0/false); otherwise only
 * on a terminal that is not TERM=dumb.
 */
export function colorEnabled(stream: { isTTY?: boolean } = process.stderr): boolean {
  if (colorOff || (process.env.NO_COLOR ?? '') !== '') return false;
  const force = process.env.FORCE_COLOR;
  if (force !== undefined) return force !== '0' && force !== 'false';
  return stream.isTTY === true && process.env.TERM !== 'dumb';
}

/** `text` in an SGR colour (31 red, 33 yellow, 1 bold ...) when colour is on for stderr. */
export function paint(sgr: string, text: string): string {
  return colorEnabled() ? `\x1b[${sgr}m${text}\x1b[0m` : text;
}

// ---- progress of a long step: one line on stderr; on a terminal a spinner with the time taken

const FRAMES = ['|', '/', '-', '\\'];

export class Progress {
  readonly #message: string;
  readonly #started = Date.now();
  readonly #tty: boolean;
  #timer: NodeJS.Timeout | undefined;
  #shown = false;
  #frame = 0;

  /**
   * Starts the step. `delayMs`: show it only once it has taken that long (a step that is usually
   * quick). The spinner needs the event loop: it stands still while a synchronous call runs.
   */
  constructor(message: string, options: { delayMs?: number; stream?: NodeJS.WriteStream } = {}) {
    this.#message = message;
    this.#tty = (options.stream ?? process.stderr).isTTY === true && process.env.TERM !== 'dumb';
    const delay = options.delayMs ?? 0;
    if (delay <= 0) this.#show();
    else this.#timer = setTimeout(() => this.#show(), delay).unref();
  }

  #show(): void {
    this.#shown = true;
    if (!this.#tty) {
      process.stderr.write(`${this.#message}\n`);
      return;
    }
    this.#draw();
    this.#timer = setInterval(() => this.#draw(), 120).unref();
  }

  #draw(): void {
    const seconds = ((Date.now() - this.#started) / 1000).toFixed(0);
    process.stderr.write(
      `\r\x1b[K${paint('36', FRAMES[this.#frame++ % FRAMES.length]!)} ${this.#message} (${seconds} s)`,
    );
  }

  /** Ends the step; on a terminal the spinner's line becomes "<message>: done in N s". */
  end(outcome: 'done' | 'failed' = 'done'): void {
    clearTimeout(this.#timer);
    clearInterval(this.#timer);
    if (!this.#shown || !this.#tty) return;
    const seconds = ((Date.now() - this.#started) / 1000).toFixed(1);
    process.stderr.write(
      `\r\x1b[K${this.#message}: ${outcome === 'done' ? 'done' : paint('31', 'failed')} in ${seconds} s\n`,
    );
  }

  /** Runs `body` as this step. */
  static async run<T>(message: string, body: () => Promise<T>, options: { delayMs?: number } = {}): Promise<T> {
    const step = new Progress(message, options);
    try {
      const result = await body();
      step.end('done');
      return result;
    } catch (error) {
      step.end('failed');
      throw error;
    }
  }
}
