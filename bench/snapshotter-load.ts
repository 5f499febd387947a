// Throughput of the snapshotter under load: calls/s and p50/p99 per RPC with 1 client and
// with 16 parallel clients (issue 16), for `devmapper serve containerd` called directly over its
// socket, and — when the bench's containerd is given — for this server and containerd's built-in
// devmapper snapshotter, both through containerd's snapshots service on pools of the same size.
// Each client repeats Prepare (on a shared committed parent) -> Stat -> Commit -> View -> List
// -> Remove (view) -> Remove (committed), so the mix is the same everywhere. Through containerd
// a Remove only drops containerd's record and its garbage collector removes from the backend;
// each run through containerd ends with one synchronous GC, counted in its seconds and calls/s.
import { join } from 'node:path';
import { runCli } from '../test/cli-process.js';
import type { Containerd } from '../test/kernel/containerd-helpers.js';
import { startServer, stopServer } from '../test/kernel/snapshotter-server.js';
import { SnapshotsClient } from '../test/snapshots-client.js';
import { GiB, MiB, progress, summarize, type Stats } from './common.js';

export const LOAD_RPCS = ['Prepare', 'Stat', 'Commit', 'View', 'List', 'Remove'] as const;
/** 'dmthin direct': our server's own socket; 'dmthin' and 'devmapper': through containerd. */
export const LOAD_BACKENDS = ['dmthin direct', 'dmthin', 'devmapper'] as const;
export type LoadBackend = (typeof LOAD_BACKENDS)[number];

export interface LoadRow {
  backend: LoadBackend;
  clients: number;
  calls: number;
  /** Whole run, the closing GC included (through containerd). */
  seconds: number;
  callsPerSecond: number;
  /** The closing synchronous GC through containerd, s. */
  gcSeconds?: number;
  /** Latency per RPC, µs (summarize: median = p50, p99). */
  rpcs: Partial<Record<(typeof LOAD_RPCS)[number], Stats>>;
}

export interface SnapshotterLoadResult {
  /** Cycles of the 7-call mix per client. */
  cyclesPerClient: Record<string, number>;
  rows: LoadRow[];
}

/** containerd and what the through-containerd rows need from the bench's bed. */
export interface LoadContainerd {
  containerd: Containerd;
  /** A synchronous garbage collection in containerd. */
  collectGarbage(): Promise<void>;
}

const GC_ROOT = { 'containerd.io/gc.root': 'bench-load' };
const NAMESPACE = 'devmapper-load';

async function drive(
  backend: LoadBackend,
  clients: SnapshotsClient[],
  cycles: number,
  tag: string,
  collectGarbage?: () => Promise<void>,
): Promise<LoadRow> {
  const samples = new Map<string, number[]>();
  const timed = async <T>(rpc: string, call: () => Promise<T>): Promise<T> => {
    const t0 = process.hrtime.bigint();
    const result = await call();
    (samples.get(rpc) ?? samples.set(rpc, []).get(rpc)!).push(Number(process.hrtime.bigint() - t0));
    return result;
  };
  const started = process.hrtime.bigint();
  await Promise.all(
    clients.map(async (client, c) => {
      for (let i = 0; i < cycles; i++) {
        const key = `${tag}-c${c}-${i}`;
        await timed('Prepare', () => client.prepare(`${key}-a`, 'load-base', GC_ROOT));
        await timed('Stat', () => client.stat(`${key}-a`));
        await timed('Commit', () => client.commit(`${key}-c`, `${key}-a`, GC_ROOT));
        await timed('View', () => client.view(`${key}-v`, `${key}-c`, GC_ROOT));
        await timed('List', () => client.list());
        await timed('Remove', () => client.remove(`${key}-v`));
        await timed('Remove', () => client.remove(`${key}-c`));
      }
    }),
  );
  let gcSeconds: number | undefined;
  if (collectGarbage) {
    const t0 = process.hrtime.bigint();
    await collectGarbage();
    gcSeconds = Math.round(Number(process.hrtime.bigint() - t0) / 1e7) / 100;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const calls = [...samples.values()].reduce((n, v) => n + v.length, 0);
  const rpcs: LoadRow['rpcs'] = {};
  for (const rpc of LOAD_RPCS) if (samples.has(rpc)) rpcs[rpc] = summarize(samples.get(rpc)!);
  return {
    backend,
    clients: clients.length,
    calls,
    seconds: Math.round(seconds * 100) / 100,
    callsPerSecond: Math.round(calls / seconds),
    gcSeconds,
    rpcs,
  };
}

/** 1 client then 16 on one backend: a shared committed base, a warm-up, the two timed runs. */
async function loadBackend(
  backend: LoadBackend,
  clients: SnapshotsClient[],
  cyclesPerClient: Record<'1' | '16', number>,
  collectGarbage?: () => Promise<void>,
): Promise<LoadRow[]> {
  const base = clients[0]!;
  await base.prepare('load-base-a', '', GC_ROOT);
  await base.commit('load-base', 'load-base-a', GC_ROOT);
  await drive(backend, clients.slice(0, 1), 2, 'warm', collectGarbage); // first-use costs
  const rows: LoadRow[] = [];
  for (const n of [1, 16] as const) {
    const row = await drive(backend, clients.slice(0, n), cyclesPerClient[`${n}`], `n${n}`, collectGarbage);
    progress(
      `  snapshotter load, ${backend}, ${n} client(s): ${row.calls} calls in ${row.seconds} s = ${row.callsPerSecond} calls/s`,
    );
    rows.push(row);
  }
  await base.remove('load-base');
  await collectGarbage?.();
  return rows;
}

export async function measureSnapshotterLoad(options: {
  quick: boolean;
  tmp: string;
  /** The bench's containerd with its `dmthin` proxy and `devmapper` snapshotters: adds their rows. */
  through?: LoadContainerd;
}): Promise<SnapshotterLoadResult> {
  const cyclesPerClient = { '1': options.quick ? 5 : 40, '16': options.quick ? 2 : 10 };
  const rows: LoadRow[] = [];
  const home = join(options.tmp, 'load-home');
  const init = await runCli(
    [
      '--home',
      home,
      'init',
      '--base-size',
      '64M',
      '--loop-data-size',
      String(4 * GiB),
      '--loop-metadata-size',
      String(128 * MiB),
    ],
    300_000,
  );
  if (init.code !== 0) throw new Error(`devmapper init: ${init.stderr}`);
  const socket = join(options.tmp, 'load.sock');
  const server = await startServer(home, socket);
  const direct = Array.from({ length: 16 }, () => new SnapshotsClient(socket));
  try {
    rows.push(...(await loadBackend('dmthin direct', direct, cyclesPerClient)));
  } finally {
    for (const client of direct) client.close();
    await stopServer(server);
    await runCli(['--home', home, 'cleanup'], 300_000);
  }
  if (options.through) {
    const { containerd, collectGarbage } = options.through;
    for (const backend of ['dmthin', 'devmapper'] as const) {
      const clients = Array.from({ length: 16 }, () => new SnapshotsClient(containerd.socket, backend, NAMESPACE));
      try {
        rows.push(...(await loadBackend(backend, clients, cyclesPerClient, collectGarbage)));
      } finally {
        for (const client of clients) client.close();
      }
    }
  }
  return { cyclesPerClient, rows };
}

/** Table lines: one row per (backend, clients), calls/s and p50/p99 per RPC, then the ratios. */
export function renderSnapshotterLoad(result: SnapshotterLoadResult): string[] {
  const ms = (us: number | undefined) => (us === undefined ? '-' : (us / 1000).toFixed(2));
  const out = [
    '',
    'Snapshotter under load: calls/s and latency per RPC (ms, p50/p99); "dmthin direct" is the server on its own socket,',
    '"dmthin" and "devmapper" go through containerd (their seconds include one closing synchronous GC)',
  ];
  out.push(
    `${'backend'.padEnd(14)} ${'clients'.padEnd(8)} ${'calls/s'.padStart(8)}  ${LOAD_RPCS.map((r) => `${r} p50/p99`.padStart(20)).join(' ')}`,
  );
  for (const row of result.rows) {
    out.push(
      `${(row.backend ?? 'dmthin direct').padEnd(14)} ${String(row.clients).padEnd(8)} ${String(row.callsPerSecond).padStart(8)}  ${LOAD_RPCS.map((r) => `${ms(row.rpcs[r]?.median)}/${ms(row.rpcs[r]?.p99)}`.padStart(20)).join(' ')}`,
    );
  }
  for (const clients of [1, 16]) {
    const of = (backend: LoadBackend) =>
      result.rows.find((r) => r.backend === backend && r.clients === clients)?.callsPerSecond;
    const ours = of('dmthin');
    const theirs = of('devmapper');
    if (ours !== undefined && theirs) {
      out.push(
        `${clients} client(s): dmthin ${ours} calls/s vs containerd devmapper ${theirs} calls/s (${(ours / theirs).toFixed(2)}×)`,
      );
    }
  }
  return out;
}

/** dmthin's calls/s through containerd beside containerd's devmapper, per concurrency (met: not fewer). */
export function snapshotterLoadTargets(
  result: SnapshotterLoadResult | undefined,
): Array<{ id: string; met: boolean; text: string }> {
  const lines: Array<{ id: string; met: boolean; text: string }> = [];
  for (const clients of [1, 16]) {
    const of = (backend: LoadBackend) => result?.rows.find((r) => r.backend === backend && r.clients === clients);
    const ours = of('dmthin');
    const theirs = of('devmapper');
    if (!ours || !theirs) continue;
    lines.push({
      id: `snapshotter-load-${clients}`,
      met: ours.callsPerSecond >= theirs.callsPerSecond,
      text: `snapshotter under load, ${clients} client(s) through containerd: dmthin ${ours.callsPerSecond} calls/s vs containerd devmapper ${theirs.callsPerSecond} calls/s`,
    });
  }
  return lines;
}
