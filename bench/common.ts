// Shared pieces of the benchmark: the machine a run measures on, statistics, per-call timing loops, progress lines on stderr,
// the line protocol with the C programs (bench/c/bench.h), files for pools.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { createInterface } from 'node:readline';

/** The machine a run measures on, recorded with its results (durationS filled in at the end). */
export interface MachineInfo {
  kernel: string;
  cpus: number;
  cpuModel: string;
  node: string;
  timerOverheadNs: number;
  /** switchProbe(): what a sleep (a context switch) adds to the user-space work right after it. */
  switchProbe?: SwitchProbe;
  durationS: number;
}

/**
 * Median µs to read one byte from each of 2,048 pages of an 8 MiB buffer: warm, and right after
 * a 50 µs sleep. A blocking ioctl sleeps too; where a switch leaves emulated state to rebuild
 * (QEMU TCG: about 3× after one, consistent with its software TLB or translated-code lookup
 * cache), a process with Node's working set pays more per blocking call than a small C program
 * does. Natively and in UML the two figures are close.
 */
export interface SwitchProbe {
  touchUs: number;
  touchAfterSleepUs: number;
}

export function switchProbe(): SwitchProbe {
  const pages = Buffer.alloc(8 * MiB);
  const touch = (): number => {
    let sum = 0;
    for (let i = 0; i < pages.length; i += 4096) sum += pages[i]!;
    return sum;
  };
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const warm: number[] = [];
  const afterSleep: number[] = [];
  for (let i = 0; i < 200; i++) {
    touch();
    let t = process.hrtime.bigint();
    touch();
    warm.push(since(t));
    Atomics.wait(cell, 0, 0, 0.05); // 50 µs asleep: the thread is switched out
    t = process.hrtime.bigint();
    touch();
    afterSleep.push(since(t));
  }
  return { touchUs: median(warm) / 1000, touchAfterSleepUs: median(afterSleep) / 1000 };
}

export function machineInfo(): MachineInfo {
  return {
    kernel: release(),
    cpus: cpus().length,
    cpuModel: cpuModel(),
    node: process.version,
    timerOverheadNs: timerOverheadNs(),
    switchProbe: switchProbe(),
    durationS: 0,
  };
}

function cpuModel(): string {
  try {
    return (
      /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown'
    );
  } catch {
    return cpus()[0]?.model ?? 'unknown';
  }
}

/** Summary of one latency distribution, in microseconds. */
export interface Stats {
  n: number;
  min: number;
  q1: number;
  median: number;
  q3: number;
  p99: number;
  max: number;
  mean: number;
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** min / quartiles / median / p99 / max / mean of samples given in nanoseconds, as µs. */
export function summarize(ns: ArrayLike<number>): Stats {
  const sorted = Float64Array.from(ns).sort();
  let sum = 0;
  for (const x of sorted) sum += x;
  const us = (x: number): number => round3(x / 1000);
  return {
    n: sorted.length,
    min: us(sorted[0] ?? NaN),
    q1: us(quantile(sorted, 0.25)),
    median: us(quantile(sorted, 0.5)),
    q3: us(quantile(sorted, 0.75)),
    p99: us(quantile(sorted, 0.99)),
    max: us(sorted[sorted.length - 1] ?? NaN),
    mean: us(sorted.length ? sum / sorted.length : NaN),
  };
}

export function median(values: readonly number[]): number {
  return quantile(Float64Array.from(values).sort(), 0.5);
}

/** Times `n` calls of `fn` one by one with process.hrtime.bigint(); nanoseconds per call. */
export function timeSync(n: number, fn: () => unknown): number[] {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    out[i] = Number(process.hrtime.bigint() - t0);
  }
  return out;
}

export async function timeAsync(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    out[i] = Number(process.hrtime.bigint() - t0);
  }
  return out;
}

/** Nanoseconds since `t0` (from process.hrtime.bigint()). */
export const since = (t0: bigint): number => Number(process.hrtime.bigint() - t0);

/** What two back-to-back process.hrtime.bigint() calls cost (the timer's own share of a sample), ns. */
export function timerOverheadNs(): number {
  const samples = timeSync(20_000, () => undefined);
  return Math.round(median(samples));
}

/** `items` rotated left by `k` (round k of an interleaved run starts with a different one). */
export function rotate<T>(items: readonly T[], k: number): T[] {
  if (items.length === 0) return [];
  const s = k % items.length;
  return [...items.slice(s), ...items.slice(0, s)];
}

// ---------------------------------------------------------------------------------------------
// progress on stderr

let progressEnabled = true;
export function setProgress(enabled: boolean): void {
  progressEnabled = enabled;
}

export function progress(line: string): void {
  if (progressEnabled) process.stderr.write(`[bench] ${line}\n`);
}

/** Runs `body`, printing a start line and, when it took over a second, how long it took. */
export async function phase<T>(label: string, body: () => Promise<T> | T): Promise<T> {
  progress(`${label} ...`);
  const t0 = Date.now();
  const result = await body();
  const ms = Date.now() - t0;
  if (ms >= 1000) progress(`${label}: ${(ms / 1000).toFixed(1)} s`);
  return result;
}

// ---------------------------------------------------------------------------------------------
// the C programs

export interface CoprocessReply {
  ok: boolean;
  ns?: number[];
  phases?: Record<string, number[]>;
  error?: string;
}

/** A C benchmark program kept running; one TAB-separated command per line, one JSON line back. */
export class Coprocess {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #waiting: Array<(line: string | undefined) => void> = [];
  readonly #lines: string[] = [];
  #ended = false;
  readonly name: string;

  constructor(binary: string, name: string) {
    this.name = name;
    this.#child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child.stderr.on('data', (chunk: Buffer) => process.stderr.write(`[${name}] ${chunk}`));
    const rl = createInterface({ input: this.#child.stdout });
    rl.on('line', (line) => {
      const waiter = this.#waiting.shift();
      if (waiter) waiter(line);
      else this.#lines.push(line);
    });
    rl.on('close', () => {
      this.#ended = true;
      for (const waiter of this.#waiting.splice(0)) waiter(undefined);
    });
    this.#child.on('error', () => {
      this.#ended = true;
    });
  }

  async call(...fields: Array<string | number | bigint>): Promise<CoprocessReply> {
    if (this.#ended) throw new Error(`${this.name} has exited`);
    this.#child.stdin.write(`${fields.join('\t')}\n`);
    const line =
      this.#lines.shift() ?? (await new Promise<string | undefined>((resolve) => this.#waiting.push(resolve)));
    if (line === undefined) throw new Error(`${this.name} exited before answering ${fields[0]}`);
    const reply = JSON.parse(line) as CoprocessReply;
    if (!reply.ok) throw new Error(`${this.name} ${fields[0]}: ${reply.error}`);
    return reply;
  }

  /** The per-iteration samples of a simple timed command. */
  async samples(...fields: Array<string | number | bigint>): Promise<number[]> {
    const reply = await this.call(...fields);
    if (!reply.ns) throw new Error(`${this.name} ${fields[0]}: no samples in the answer`);
    return reply.ns;
  }

  async close(): Promise<void> {
    if (this.#ended) return;
    const exited = new Promise<void>((resolve) => this.#child.once('close', () => resolve()));
    this.#child.stdin.end('quit\n');
    await exited;
  }
}

/** argv words joined for the `spawn` command of dm-floor (words split by 0x1f). */
export const words = (argv: readonly string[]): string => argv.join('\x1f');

// ---------------------------------------------------------------------------------------------
// files

/** A file of `bytes` written with zeros (not sparse): a pool's metadata allocator then touches pages that exist. */
export function zeroFile(path: string, bytes: number): void {
  const fd = openSync(path, 'w', 0o600);
  try {
    const chunk = Buffer.alloc(1 << 20);
    for (let done = 0; done < bytes; done += chunk.length)
      writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done));
  } finally {
    closeSync(fd);
  }
}

export function sparseFile(path: string, bytes: number): void {
  const fd = openSync(path, 'w', 0o600);
  try {
    ftruncateSync(fd, bytes);
  } finally {
    closeSync(fd);
  }
}

export const MiB = 1 << 20;
export const GiB = 1 << 30;
