// The host half of the power-cut test: boots the test kernel once per round on one home kept
// in a host directory (hostfs: the loop files, the metadata and the acknowledgement log
// survive the guest), and in each round waits until the guest has verified the previous cut
// and started its stream, then hard-stops the whole guest (SIGKILL to the VM's process group:
// no shutdown, no sync, the guest's page cache lost) at a seeded random moment. A last boot
// verifies the last cut, cleans up and runs thin_check on the inactive pool. Two workloads: the
// Driver's layer operations (guest.ts) and containerd snapshotter calls through the real
// `devmapper serve containerd` (snapshots-guest.ts).
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runInVm, type VmBackend } from '../vm/runner.js';
import { prng } from './guest.js';

export type Workload = 'layers' | 'snapshots';
const GUEST: Record<Workload, string> = {
  layers: join(dirname(fileURLToPath(import.meta.url)), 'guest.js'),
  snapshots: join(dirname(fileURLToPath(import.meta.url)), 'snapshots-guest.js'),
};
const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

export interface CutFigures {
  round: number;
  /** ms between the stream's start and the cut. */
  delayMs: number;
  /** What the next boot found of the operation the cut interrupted. */
  inFlight: string;
  openTransaction: boolean;
  /** Layers (snapshots) the next boot verified. */
  layers: number;
  files: number;
  bytes: number;
  /** The next boot's recovery: Driver.init, or until the restarted server listens. */
  initMs: number;
  verifyMs: number;
  /** Calls acknowledged in the round the cut ended (snapshots: the gRPC calls that returned, Mounts for writes included). */
  ackedOps: number;
}

export interface PowerCutResult {
  workload: Workload;
  seed: number;
  cuts: CutFigures[];
  finalThinCheck: string;
  totalMs: number;
  /** Acknowledged operations by name, over the whole run. */
  acked: Record<string, number>;
  /** What stopped the run: a failed verification, a guest that died (the figures are those before it). */
  failure?: string;
}

export interface PowerCutOptions {
  workload?: Workload;
  cuts: number;
  seed: number;
  /** Longest delay after the stream starts before a cut. Default 3 s (layers), 5 s (snapshots: a gRPC call and its mount cost more). */
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
  const workload = options.workload ?? 'layers';
  const random = prng(options.seed);
  const say = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  // A host directory: bound back into the guest (its /tmp is private), kept across boots.
  const dir = mkdtempSync(join(tmpdir(), 'devmapper-power-cut-'));
  const home = join(dir, 'home');
  const log = join(dir, 'ack.log');
  const cuts: CutFigures[] = [];
  const maxDelay = options.maxDelayMs ?? (workload === 'layers' ? 3000 : 5000);
  const totals = (): Record<string, number> => {
    const acked: Record<string, number> = {};
    for (const l of lines(log))
      if (l.kind === 'ack' || l.kind === 'synced') {
        const op = l.kind === 'synced' ? 'write' : l.value.op;
        acked[op] = (acked[op] ?? 0) + 1;
      }
    return acked;
  };
  const partial = (failure: string): PowerCutResult => ({
    workload,
    seed: options.seed,
    cuts: cuts.filter((c) => c.inFlight !== ''),
    finalThinCheck: 'not run',
    totalMs: Date.now() - started,
    acked: totals(),
    failure,
  });
  try {
    for (let round = 0; round <= options.cuts; round++) {
      const final = round === options.cuts;
      const delayMs = Math.floor(random() * maxDelay);
      const before = lines(log).length;
      const controller = new AbortController();
      let output = '';
      const vm = runInVm({
        command: [
          process.execPath,
          GUEST[workload],
          final ? 'final' : 'round',
          home,
          log,
          String(options.seed * 1000 + round),
        ],
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
        return partial(
          `power cut round ${round} (seed ${options.seed}): the guest ${result.outcome}${result.exitCode === null ? '' : ` with status ${result.exitCode}`} instead of ${final ? 'finishing' : 'being cut'}\n${output.slice(-6000)}\n${result.kernelLog.slice(-3000)}`,
        );
      }
      if (!verified) return partial(`power cut round ${round}: no verification logged\n${output.slice(-4000)}`);
      if (round > 0) {
        const f = verified.value.figures;
        const previous = cuts[round - 1]!;
        Object.assign(previous, {
          inFlight: f.inFlight,
          openTransaction: f.openTransaction,
          layers: f.layers ?? f.snapshots,
          files: f.files,
          bytes: f.bytes,
          initMs: f.initMs ?? f.recoverMs,
          verifyMs: f.verifyMs,
        });
        say(
          `power cut ${round}/${options.cuts}: ${previous.delayMs} ms into the stream, ${previous.ackedOps} ops acknowledged; next boot: ${f.inFlight}${f.openTransaction ? ' (open transaction recovered)' : ''}, ${previous.layers} ${workload}, ${f.files} files (${f.bytes} bytes) verified, ${workload === 'layers' ? 'init' : 'server listening after'} ${previous.initMs} ms`,
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
          ackedOps: fresh.filter((l) => l.kind === 'ack' || l.kind === 'synced').length,
        });
      } else {
        const finalLine = fresh.find((l) => l.kind === 'final');
        return {
          workload,
          seed: options.seed,
          cuts,
          finalThinCheck: finalLine?.value.thinCheck ?? 'not run',
          totalMs: Date.now() - started,
          acked: totals(),
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
  const layers = result.workload === 'layers';
  const count = (pred: (f: CutFigures) => boolean): number => c.filter(pred).length;
  const outcomes = new Map<string, number>();
  for (const f of c) outcomes.set(f.inFlight, (outcomes.get(f.inFlight) ?? 0) + 1);
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const spread = (xs: number[]): string => `median ${median(xs)}, min ${Math.min(...xs)}, max ${Math.max(...xs)}`;
  const a = result.acked;
  return [
    `power cuts (${layers ? 'Driver layer operations' : 'containerd snapshotter calls through devmapper serve containerd'}): ${c.length} (seed ${result.seed}) in ${(result.totalMs / 1000).toFixed(1)} s, ${result.failure ? 'FAILED' : 'every one recovered and verified'}`,
    layers
      ? `  acknowledged: ${a.create ?? 0} creates, ${a.remove ?? 0} removes, ${a.put ?? 0} puts with files`
      : `  acknowledged: ${a.prepare ?? 0} Prepare, ${a.write ?? 0} Mounts with synced writes, ${a.commit ?? 0} Commit, ${a.view ?? 0} View, ${a.remove ?? 0} Remove`,
    ...(c.length > 0
      ? [
          `  calls acknowledged in the round before each cut: ${spread(c.map((f) => f.ackedOps))}; cut ${spread(c.map((f) => f.delayMs))} ms into the stream`,
          `  interrupted ${layers ? 'operation' : 'call'} found at the next boot: ${[...outcomes].map(([k, v]) => `${k} ${v}`).join(', ')}`,
          `  open transactions recovered: ${count((f) => f.openTransaction)}`,
          `  verified after the cuts: ${c.reduce((s, f) => s + f.files, 0)} files, ${c.reduce((s, f) => s + f.bytes, 0)} bytes, ${result.workload} per boot median ${median(c.map((f) => f.layers))}`,
          `  ${layers ? 'init after a cut' : 'recovery (server started until listening)'}: ${spread(c.map((f) => f.initMs))} ms; whole verification ${spread(c.map((f) => f.verifyMs))} ms`,
        ]
      : []),
    `  thin_check after every cut (metadata snapshot) and at the end (inactive pool): ${result.finalThinCheck}`,
    `  failures: ${result.failure ? `1 (the run stopped there)\n${result.failure}` : 0}`,
  ].join('\n');
}
