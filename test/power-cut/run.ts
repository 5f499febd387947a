// The host half of the power-cut test: boots the test kernel once per round on one home kept
// in a host directory (hostfs: the loop files, the metadata and the acknowledgement log
// survive the guest), and in each round waits until the guest has verified the previous cut
// and started its stream, then hard-stops the whole guest (SIGKILL to the VM's process group:
// no shutdown, no sync, the guest's page cache lost) at a seeded random moment. A last boot
// verifies the last cut, cleans up and runs thin_check on the inactive pool. See guest.ts.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runInVm, type VmBackend } from '../vm/runner.js';
import { prng } from './guest.js';

const GUEST = join(dirname(fileURLToPath(import.meta.url)), 'guest.js');
const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

export interface CutFigures {
  round: number;
  /** ms between the stream's start and the cut. */
  delayMs: number;
  /** What the next boot found of the operation the cut interrupted. */
  inFlight: string;
  openTransaction: boolean;
  layers: number;
  files: number;
  bytes: number;
  initMs: number;
  verifyMs: number;
  /** Acknowledged operations in the round the cut ended. */
  ackedOps: number;
}

export interface PowerCutResult {
  seed: number;
  cuts: CutFigures[];
  finalThinCheck: string;
  totalMs: number;
  acked: { create: number; remove: number; put: number };
}

export interface PowerCutOptions {
  cuts: number;
  seed: number;
  /** Longest delay after the stream starts before a cut. Default 3 s. */
  maxDelayMs?: number;
  backend?: VmBackend;
  onOutput?: (chunk: Buffer) => void;
  log?: (line: string) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function lines(path: string): Array<{ kind: string; value: any }> {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .flatMap((line) => {
      const space = line.indexOf(' ');
      if (space < 0) return [];
      try {
        return [{ kind: line.slice(0, space), value: JSON.parse(line.slice(space + 1)) }];
      } catch {
        return [];
      }
    });
}

export async function runPowerCuts(options: PowerCutOptions): Promise<PowerCutResult> {
  const started = Date.now();
  const random = prng(options.seed);
  const say = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  // A host directory: bound back into the guest (its /tmp is private), kept across boots.
  const dir = mkdtempSync(join(tmpdir(), 'devmapper-power-cut-'));
  const home = join(dir, 'home');
  const log = join(dir, 'ack.log');
  const cuts: CutFigures[] = [];
  const maxDelay = options.maxDelayMs ?? 3000;
  try {
    for (let round = 0; round <= options.cuts; round++) {
      const final = round === options.cuts;
      const delayMs = Math.floor(random() * maxDelay);
      const before = lines(log).length;
      const controller = new AbortController();
      let output = '';
      const vm = runInVm({
        command: [process.execPath, GUEST, final ? 'final' : 'round', home, log, String(options.seed * 1000 + round)],
        cwd: projectRoot,
        keep: [dir],
        timeoutMs: 240_000,
        signal: controller.signal,
        onOutput: (chunk) => {
          output += chunk.toString();
          options.onOutput?.(chunk);
        },
      });
      let cutAt = 0;
      if (!final) {
        // Cut at the seeded moment after the stream started (the verification must pass first).
        let settled = false;
        void vm.finally(() => {
          settled = true;
        });
        while (
          !settled &&
          !lines(log)
            .slice(before)
            .some((l) => l.kind === 'stream-start')
        )
          await sleep(20);
        if (!settled) {
          await sleep(delayMs);
          cutAt = Date.now();
          controller.abort();
        }
      }
      const result = await vm;
      const fresh = lines(log).slice(before);
      const verified = fresh.find((l) => l.kind === 'verified');
      if (final ? result.outcome !== 'exited' || result.exitCode !== 0 : result.outcome !== 'killed') {
        throw new Error(
          `power cut round ${round} (seed ${options.seed}): the guest ${result.outcome}${result.exitCode === null ? '' : ` with status ${result.exitCode}`} instead of ${final ? 'finishing' : 'being cut'}\n${output.slice(-6000)}\n${result.kernelLog.slice(-3000)}`,
        );
      }
      if (!verified) throw new Error(`power cut round ${round}: no verification logged\n${output.slice(-4000)}`);
      if (round > 0) {
        const f = verified.value.figures;
        const previous = cuts[round - 1]!;
        Object.assign(previous, {
          inFlight: f.inFlight,
          openTransaction: f.openTransaction,
          layers: f.layers,
          files: f.files,
          bytes: f.bytes,
          initMs: f.initMs,
          verifyMs: f.verifyMs,
        });
        say(
          `power cut ${round}/${options.cuts}: ${previous.delayMs} ms into the stream, ${previous.ackedOps} ops acknowledged; next boot: ${f.inFlight}${f.openTransaction ? ' (open transaction recovered)' : ''}, ${f.layers} layers, ${f.files} files (${f.bytes} bytes) verified, init ${f.initMs} ms`,
        );
      }
      if (!final) {
        cuts.push({
          round,
          delayMs: cutAt ? delayMs : 0,
          inFlight: '',
          openTransaction: false,
          layers: 0,
          files: 0,
          bytes: 0,
          initMs: 0,
          verifyMs: 0,
          ackedOps: fresh.filter((l) => l.kind === 'ack').length,
        });
      } else {
        const finalLine = fresh.find((l) => l.kind === 'final');
        const acked = { create: 0, remove: 0, put: 0 };
        for (const l of lines(log))
          if (l.kind === 'ack' && l.value.op in acked) acked[l.value.op as keyof typeof acked]++;
        return {
          seed: options.seed,
          cuts,
          finalThinCheck: finalLine?.value.thinCheck ?? 'not run',
          totalMs: Date.now() - started,
          acked,
        };
      }
    }
    throw new Error('unreachable');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The figures of a run, for people. */
export function formatPowerCuts(result: PowerCutResult): string {
  const c = result.cuts;
  const count = (pred: (f: CutFigures) => boolean): number => c.filter(pred).length;
  const outcomes = new Map<string, number>();
  for (const f of c) outcomes.set(f.inFlight, (outcomes.get(f.inFlight) ?? 0) + 1);
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  return [
    `power cuts: ${c.length} (seed ${result.seed}) in ${(result.totalMs / 1000).toFixed(1)} s, every one recovered and verified`,
    `  acknowledged: ${result.acked.create} creates, ${result.acked.remove} removes, ${result.acked.put} puts with files`,
    `  interrupted operation found at the next boot: ${[...outcomes].map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `  open transactions recovered by init: ${count((f) => f.openTransaction)}`,
    `  verified after the cuts: ${c.reduce((s, f) => s + f.files, 0)} files, ${c.reduce((s, f) => s + f.bytes, 0)} bytes, layers per boot median ${median(c.map((f) => f.layers))}`,
    `  init after a cut: median ${median(c.map((f) => f.initMs))} ms, max ${Math.max(0, ...c.map((f) => f.initMs))} ms`,
    `  thin_check after every cut (metadata snapshot) and at the end (inactive pool): ${result.finalThinCheck}`,
  ].join('\n');
}
