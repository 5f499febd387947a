// Throughput of `devmapper serve containerd` called directly over its socket (no containerd in
// between): calls/s and p50/p99 per RPC with 1 client and with 16 parallel clients (issue 16).
// Each client repeats Prepare (on a shared committed parent) -> Stat -> Commit -> View -> List
// -> Remove (view) -> Remove (committed), so the mix is the same at both concurrencies.
import { join } from 'node:path';
import { runCli } from '../test/cli-process.js';
import { startServer, stopServer } from '../test/kernel/containerd-helpers.js';
import { SnapshotsClient } from '../test/snapshots-client.js';
import { GiB, MiB, progress, summarize, type Stats } from './common.js';

export const LOAD_RPCS = ['Prepare', 'Stat', 'Commit', 'View', 'List', 'Remove'] as const;

export interface LoadRow {
  clients: number;
  calls: number;
  seconds: number;
  callsPerSecond: number;
  /** Latency per RPC, µs (summarize: median = p50, p99). */
  rpcs: Partial<Record<(typeof LOAD_RPCS)[number], Stats>>;
}

export interface SnapshotterLoadResult {
  /** Cycles of the 7-call mix per client. */
  cyclesPerClient: Record<string, number>;
  rows: LoadRow[];
}

async function drive(clients: SnapshotsClient[], cycles: number, tag: string): Promise<LoadRow> {
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
        await timed('Prepare', () => client.prepare(`${key}-a`, 'load-base'));
        await timed('Stat', () => client.stat(`${key}-a`));
        await timed('Commit', () => client.commit(`${key}-c`, `${key}-a`));
        await timed('View', () => client.view(`${key}-v`, `${key}-c`));
        await timed('List', () => client.list());
        await timed('Remove', () => client.remove(`${key}-v`));
        await timed('Remove', () => client.remove(`${key}-c`));
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const calls = [...samples.values()].reduce((n, v) => n + v.length, 0);
  const rpcs: LoadRow['rpcs'] = {};
  for (const rpc of LOAD_RPCS) if (samples.has(rpc)) rpcs[rpc] = summarize(samples.get(rpc)!);
  return {
    clients: clients.length,
    calls,
    seconds: Math.round(seconds * 100) / 100,
    callsPerSecond: Math.round(calls / seconds),
    rpcs,
  };
}

export async function measureSnapshotterLoad(options: { quick: boolean; tmp: string }): Promise<SnapshotterLoadResult> {
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
  const clients = Array.from({ length: 16 }, () => new SnapshotsClient(socket));
  const cyclesPerClient = { '1': options.quick ? 5 : 40, '16': options.quick ? 2 : 10 };
  try {
    await clients[0]!.prepare('load-base-a', '');
    await clients[0]!.commit('load-base', 'load-base-a');
    await drive(clients.slice(0, 1), 2, 'warm'); // first-use costs
    const rows: LoadRow[] = [];
    for (const n of [1, 16]) {
      const row = await drive(clients.slice(0, n), cyclesPerClient[String(n) as '1' | '16'], `n${n}`);
      progress(
        `  snapshotter load, ${n} client(s): ${row.calls} calls in ${row.seconds} s = ${row.callsPerSecond} calls/s`,
      );
      rows.push(row);
    }
    await clients[0]!.remove('load-base');
    return { cyclesPerClient, rows };
  } finally {
    for (const client of clients) client.close();
    await stopServer(server);
    await runCli(['--home', home, 'cleanup'], 300_000);
  }
}

/** Table lines: one row per (clients, RPC), plus calls/s per concurrency. */
export function renderSnapshotterLoad(result: SnapshotterLoadResult): string[] {
  const ms = (us: number | undefined) => (us === undefined ? '-' : (us / 1000).toFixed(2));
  const out = ['', 'Snapshotter server under load (direct gRPC, no containerd): calls/s and latency per RPC (ms)'];
  out.push(
    `${'clients'.padEnd(8)} ${'calls/s'.padStart(8)}  ${LOAD_RPCS.map((r) => `${r} p50/p99`.padStart(20)).join(' ')}`,
  );
  for (const row of result.rows) {
    out.push(
      `${String(row.clients).padEnd(8)} ${String(row.callsPerSecond).padStart(8)}  ${LOAD_RPCS.map((r) => `${ms(row.rpcs[r]?.median)}/${ms(row.rpcs[r]?.p99)}`.padStart(20)).join(' ')}`,
    );
  }
  return out;
}
