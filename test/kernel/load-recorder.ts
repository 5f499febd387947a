// The load test's instruments (containerd-load.test.ts): per-call latency with a deadlock
// watchdog, RSS sampled by call count and by time, the growth after warm-up, and the report.
import type { ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';

/** Latency samples per call name, in ns. */
export class Recorder {
  readonly samples = new Map<string, number[]>();
  calls = 0;
  lastProgress = Date.now();
  readonly inFlight = new Map<number, string>();
  /** Run after every finished call (RSS sampling by call count). */
  readonly afterCall: Array<() => void> = [];
  #serial = 0;
  readonly #watchdogMs: number;

  /** A call that takes longer than `watchdogMs` fails as a deadlock. */
  constructor(watchdogMs: number) {
    this.#watchdogMs = watchdogMs;
  }

  async time<T>(name: string, what: string, call: () => Promise<T>): Promise<T> {
    const id = ++this.#serial;
    this.inFlight.set(id, `${name} ${what}`);
    let timer: NodeJS.Timeout | undefined;
    const watchdog = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `deadlock? ${name} ${what} has not returned after ${this.#watchdogMs} ms; in flight: ${[...this.inFlight.values()].join('; ')}`,
            ),
          ),
        this.#watchdogMs,
      );
    });
    const t0 = process.hrtime.bigint();
    try {
      const result = await Promise.race([call(), watchdog]);
      const ns = Number(process.hrtime.bigint() - t0);
      (this.samples.get(name) ?? this.samples.set(name, []).get(name)!).push(ns);
      this.calls++;
      this.lastProgress = Date.now();
      for (const hook of this.afterCall) hook();
      return result;
    } catch (error) {
      throw new Error(`${name} ${what}: ${(error as { details?: string }).details ?? (error as Error).message}`, {
        cause: error,
      });
    } finally {
      clearTimeout(timer);
      this.inFlight.delete(id);
    }
  }

  /** One line per call name: n, p50, p99 (ms). */
  table(): string[] {
    const q = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
    return [...this.samples]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, values]) => {
        const sorted = [...values].sort((a, b) => a - b);
        return `  ${name.padEnd(10)} n ${String(sorted.length).padStart(6)}  p50 ${(q(sorted, 0.5) / 1e6).toFixed(2).padStart(8)} ms  p99 ${(q(sorted, 0.99) / 1e6).toFixed(2).padStart(8)} ms`;
      });
  }
}

/**
 * RSS samples (KiB) of a process, with the number of calls done when each was taken: every
 * `every` calls, and every 250 ms when the event loop is free for timers (in the Driver run
 * the ioctls keep it busy, so only the call count samples there).
 */
export function sampleRss(
  pid: number | 'self',
  recorder: Recorder,
  every: number,
): { samples: Array<{ calls: number; kib: number }>; stop(): void } {
  const samples: Array<{ calls: number; kib: number }> = [];
  const read = () => {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (m) samples.push({ calls: recorder.calls, kib: Number(m[1]) });
  };
  read();
  let stopped = false;
  recorder.afterCall.push(() => {
    if (stopped || recorder.calls % every !== 0) return;
    try {
      read();
    } catch {
      /* exited */
    }
  });
  const timer = setInterval(() => {
    try {
      read();
    } catch {
      /* exited */
    }
  }, 250);
  return {
    samples,
    stop: () => {
      stopped = true;
      clearInterval(timer);
      try {
        read();
      } catch {
        /* exited */
      }
    },
  };
}

/** RSS after warm-up (the first quarter of the calls) against the rest: growth in KiB. */
export function rssGrowth(
  samples: Array<{ calls: number; kib: number }>,
  total: number,
): { warm: number; last: number; max: number; growth: number; n: number; afterWarmUp: number } {
  const after = samples.filter((s) => s.calls >= total / 4);
  const warm = after[0]?.kib ?? samples[samples.length - 1]!.kib;
  const max = Math.max(...after.map((s) => s.kib), warm);
  const last = samples[samples.length - 1]!.kib;
  return { warm, last, max, growth: max - warm, n: samples.length, afterWarmUp: after.length };
}

/** RSS flat after warm-up, judged on enough samples to mean something (a run of two would pass anything). */
export function assertRssFlat(
  t: ExecutionContext,
  what: string,
  rss: ReturnType<typeof rssGrowth>,
  slackKiB: number,
): void {
  t.true(rss.afterWarmUp >= 50, `${what}: ${rss.afterWarmUp} RSS samples after warm-up (at least 50)`);
  t.true(
    rss.growth <= slackKiB,
    `${what} RSS grew ${(rss.growth / 1024).toFixed(1)} MiB after warm-up (at most ${slackKiB / 1024} MiB)`,
  );
}

/** calls/s, the per-call table and the RSS summary, logged and printed; `run` says how (clients, seed). */
export function report(
  t: ExecutionContext,
  title: string,
  recorder: Recorder,
  seconds: number,
  rss: ReturnType<typeof rssGrowth>,
  run: string,
): void {
  const lines = [
    `${title}: ${recorder.calls} calls in ${seconds.toFixed(1)} s = ${(recorder.calls / seconds).toFixed(0)} calls/s (${run})`,
    ...recorder.table(),
    `  RSS after warm-up ${(rss.warm / 1024).toFixed(1)} MiB, max ${(rss.max / 1024).toFixed(1)} MiB, at the end ${(rss.last / 1024).toFixed(1)} MiB (growth ${(rss.growth / 1024).toFixed(1)} MiB; ${rss.n} samples)`,
  ];
  for (const line of lines) t.log(line);
  process.stderr.write(`${lines.join('\n')}\n`);
}
