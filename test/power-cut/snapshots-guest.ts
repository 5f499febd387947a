// The guest half of the snapshotter power-cut test (run.ts boots it once per round, like
// guest.ts): the real `devmapper serve containerd` as a child process on a home kept on the host
// (hostfs: loop files, metadata and the acknowledgement log survive the guest), driven through
// gRPC the way containerd drives it.
//
//   1. verify: replays the log (snapshots-model.ts), starts the server on the home (its init
//      and Snapshotter.open recover what the cut interrupted; the time until it listens is the
//      recovery time) and checks: List shows exactly the acknowledged snapshots with their kind,
//      parent and labels; the call the cut interrupted left all or nothing (a Prepare's snapshot
//      is absent, or listed and mountable with its parent's files; a Commit either happened or
//      not; a Remove likewise); every synced file of an active snapshot (through Mounts), a view
//      and a committed snapshot (through a View of it) reads back with its sha256. Then the
//      server stops and `devmapper check --thin-check` must be clean (no leaked thin id, no
//      record without a device, no device without a record, thin_check passes).
//   2. stream: a new server; writes `stream-start`, then seeded random Prepare (with writes
//      into the mounted snapshot, each file fsync'd, then unmounted, as containerd unpacks),
//      Commit, View (read back), Remove, all with labels, until the host kills the guest.
//
// `final` verifies, then `devmapper cleanup`, and thin_check on the inactive pool.
// Usage: node snapshots-guest.js round|final <home> <log> <seed>
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  statfsSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { thinCheckOffline } from '../../src/driver/thin-check.js';
import { openTransactionExists } from '../kernel/driver-helpers.js';
import { initHome, runCli, startServer, stopServer, type Server } from '../kernel/snapshotter-server.js';
import { Kernel } from '../../src/ioctl/kernel.js';
import { prng } from '../prng.js';
import { OpLog } from './op-log.js';
import { SnapshotsClient, type WireInfo, type WireMount } from '../snapshots-client.js';
import { apply, childCounts, replaySnapshots, type Call, type Snap, type SnapModel } from './snapshots-model.js';

/** 10 snapshots of at most 32 MiB each fit the data file even if none shares a block. */
const SIZES = { baseSize: '32M', loopDataSize: '512M', loopMetadataSize: '8M' };
const MAX_SNAPSHOTS = 10;
const WIRE_KIND = { active: 'ACTIVE', view: 'VIEW', committed: 'COMMITTED' } as const;
const run = promisify(execFile);

const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');
const sameLabels = (a: Record<string, string>, b: Record<string, string>): boolean =>
  JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());

/** Mounts what Prepare/View/Mounts returned (containerd's mount.All), runs `body`, unmounts. */
async function withMount<T>(mounts: WireMount[], body: (root: string) => T | Promise<T>): Promise<T> {
  const [m] = mounts;
  if (!m || mounts.length !== 1) throw new Error(`expected one mount, got ${JSON.stringify(mounts)}`);
  const target = mkdtempSync(join(tmpdir(), 'pc-mnt-'));
  await run('mount', ['-t', m.type, ...(m.options.length ? ['-o', m.options.join(',')] : []), m.source, target]);
  try {
    return await body(target);
  } finally {
    await run('umount', [target]);
  }
}

/** Problems with the files of a mounted snapshot; counts what was read. */
function checkFiles(root: string, name: string, files: Record<string, string>, seen: { files: number; bytes: number }) {
  const problems: string[] = [];
  for (const [file, hash] of Object.entries(files)) {
    const path = join(root, file);
    if (!existsSync(path)) {
      problems.push(`${name}: synced file ${file} is missing`);
      continue;
    }
    const data = readFileSync(path);
    if (sha(data) !== hash) problems.push(`${name}: synced file ${file} has other content`);
    seen.files++;
    seen.bytes += data.length;
  }
  return problems;
}

function matches(info: WireInfo | undefined, snap: Snap): boolean {
  return (
    info !== undefined &&
    info.kind === WIRE_KIND[snap.kind] &&
    info.parent === snap.parent &&
    sameLabels(info.labels, snap.labels)
  );
}

/** Settles the interrupted call against what the server lists; returns the outcome's name. */
function settleInFlight(flight: Call | undefined, listed: Map<string, WireInfo>, expected: SnapModel): string {
  if (!flight) return 'none';
  const after = new Map(expected);
  apply(after, flight);
  if (flight.op === 'prepare' || flight.op === 'view') {
    if (!listed.has(flight.key)) return `${flight.op} absent`;
    expected.set(flight.key, after.get(flight.key)!); // must then match in full, and mount
    return `${flight.op} done`;
  }
  if (flight.op === 'commit') {
    if (!listed.has(flight.name!)) return 'commit not done';
    expected.delete(flight.key);
    expected.set(flight.name!, after.get(flight.name!)!);
    return 'commit done';
  }
  if (listed.has(flight.key)) return 'remove not done';
  expected.delete(flight.key);
  return 'remove done';
}

async function verify(client: SnapshotsClient, state: ReturnType<typeof replaySnapshots>, round: number) {
  const problems: string[] = [];
  const listed = new Map((await client.list()).map((info) => [info.name, info]));
  const expected: SnapModel = new Map(state.model);
  const inFlight = settleInFlight(state.inFlight, listed, expected);
  for (const [name, snap] of expected)
    if (!matches(listed.get(name), snap))
      problems.push(
        `${name}: expected ${JSON.stringify({ ...snap, files: undefined })}, listed ${JSON.stringify(listed.get(name) ?? null)}`,
      );
  for (const name of listed.keys())
    if (!expected.has(name)) problems.push(`${name}: listed but never acknowledged (or acknowledged as removed)`);
  const seen = { files: 0, bytes: 0 };
  let n = 0;
  // In parallel: the server takes concurrent calls as containerd makes them, and each check
  // waits mostly on the guest's disk.
  const checks = [...expected].map(async ([name, snap]) => {
    if (!listed.has(name) || (snap.kind !== 'active' && Object.keys(snap.files).length === 0)) return;
    const check = (root: string) => problems.push(...checkFiles(root, name, snap.files, seen));
    if (snap.kind === 'committed') {
      const key = `power-cut/verify/${round}/${n++}`;
      await withMount(await client.view(key, name), check);
      await client.remove(key);
    } else {
      await withMount(await client.mounts(name), check); // every active snapshot must mount
    }
  });
  for (const outcome of await Promise.allSettled(checks))
    if (outcome.status === 'rejected') problems.push(`verifying files: ${(outcome.reason as Error).message}`);
  return { problems, inFlight, expected, seen };
}

async function serve(home: string): Promise<{ server: Server; client: SnapshotsClient; startMs: number }> {
  const started = Date.now();
  const socket = join(tmpdir(), `pc-${process.pid}-${started}.sock`);
  const server = await startServer(home, socket);
  return { server, client: new SnapshotsClient(socket), startMs: Date.now() - started };
}

async function stop(s: { server: Server; client: SnapshotsClient }): Promise<void> {
  s.client.close();
  const status = await stopServer(s.server);
  if (status !== 0) throw new Error(`devmapper serve exited ${status}:\n${s.server.output().slice(-3000)}`);
}

const labelsFor = (random: () => number, round: number, n: number): Record<string, string> => {
  const labels: Record<string, string> = { 'power-cut/round': String(round) };
  if (random() < 0.7) labels['containerd.io/snapshot.ref'] = `sha256:${randomBytes(32).toString('hex')}`;
  if (random() < 0.3) labels['containerd.io/gc.root'] = new Date(1_800_000_000_000 + n).toISOString();
  return labels;
};

/** Writes each file and fsyncs it and its directory: `synced` means on the disk. */
function writeFiles(root: string, random: () => number, prefix: string): Record<string, string> {
  const files: Record<string, string> = {};
  const count = 1 + Math.floor(random() * 3);
  for (let i = 0; i < count; i++) {
    const size = random() < 0.1 ? (1 << 20) + Math.floor(random() * (1 << 20)) : 1 + Math.floor(random() * (64 << 10));
    const fs = statfsSync(root);
    if (Number(fs.bavail) * Number(fs.bsize) < size + (8 << 20)) break; // each fs is the base's 32 MiB
    const data = randomBytes(size);
    const name = `${prefix}-${i}.bin`;
    const fd = openSync(join(root, name), 'w');
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    files[name] = sha(data);
  }
  const dir = openSync(root, 'r');
  fsyncSync(dir);
  closeSync(dir);
  return files;
}

async function stream(client: SnapshotsClient, log: OpLog, random: () => number, round: number, model: SnapModel) {
  let n = 0;
  const pick = <T>(items: T[]): T | undefined => items[Math.floor(random() * items.length)];
  const call = async (c: Call, rpc: () => Promise<unknown>) => {
    log.write('begin', c);
    await rpc();
    log.write('ack', c);
    apply(model, c);
  };
  log.write('stream-start', { round });
  // Writes (files, fsyncs, an unmount) take longer than a call: they are kept fewer and mostly
  // small so that more cuts land inside a Prepare, Commit, View or Remove.
  for (;;) {
    const names = [...model.keys()];
    const of = (kind: Snap['kind']) => names.filter((k) => model.get(k)!.kind === kind);
    const roll = random();
    if (roll < 0.3 && model.size < MAX_SNAPSHOTS) {
      const parent = random() < 0.75 ? (pick(of('committed')) ?? '') : '';
      const c: Call = { op: 'prepare', key: `default/${round}/a${n++}`, parent, labels: labelsFor(random, round, n) };
      await call(c, () => client.prepare(c.key, parent, c.labels));
    } else if (roll < 0.45) {
      const key = pick(of('active'));
      if (!key) continue;
      const files = await withMount(await client.mounts(key), (root) => writeFiles(root, random, `f-${round}-${n++}`));
      log.write('synced', { key, files });
      Object.assign(model.get(key)!.files, files);
    } else if (roll < 0.7) {
      const key = pick(of('active'));
      if (!key) continue;
      const c: Call = { op: 'commit', key, name: `default/${round}/c${n++}`, labels: labelsFor(random, round, n) };
      await call(c, () => client.commit(c.name!, key, c.labels));
    } else if (roll < 0.8 && model.size < MAX_SNAPSHOTS) {
      const parent = pick(of('committed'));
      if (!parent) continue;
      const c: Call = { op: 'view', key: `default/${round}/v${n++}`, parent, labels: labelsFor(random, round, n) };
      let mounts: WireMount[] = [];
      await call(c, async () => {
        mounts = await client.view(c.key, parent, c.labels);
      });
      const [file, hash] = Object.entries(model.get(parent)!.files)[0] ?? [];
      await withMount(mounts, (root) => {
        if (file && sha(readFileSync(join(root, file))) !== hash)
          throw new Error(`view ${c.key} of ${parent}: ${file} has other content`);
      });
    } else if (roll >= 0.8 && model.size >= 3) {
      const children = childCounts(model);
      const key = pick(names.filter((k) => !children.has(k)));
      if (!key) continue;
      await call({ op: 'remove', key }, () => client.remove(key));
    }
  }
}

async function main(): Promise<void> {
  const [mode, home, logPath, seedText] = process.argv.slice(2);
  if ((mode !== 'round' && mode !== 'final') || !home || !logPath || !seedText)
    throw new Error('usage: snapshots-guest.js round|final <home> <log> <seed>');
  const round = Number(seedText);
  const state = replaySnapshots(existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');
  const openTransaction = openTransactionExists(home);
  if (!existsSync(home)) {
    mkdirSync(home, { recursive: true });
    await initHome(home, SIZES);
  }
  const log = new OpLog(logPath);
  const started = Date.now();
  const first = await serve(home);
  const { problems, inFlight, expected, seen } = await verify(first.client, state, round);
  await stop(first);
  const checkStarted = Date.now();
  const checked = await runCli(['--home', home, 'check', '--thin-check', '--json']);
  const checkMs = Date.now() - checkStarted;
  let report: any;
  try {
    report = JSON.parse(checked.stdout);
  } catch {
    problems.push(`check (${checked.code}) printed no report: ${checked.stderr}`);
  }
  if (report && (checked.code !== 0 || !report.clean)) problems.push(`check not clean: ${checked.stdout}`);
  if (report?.thinCheck?.ran && !report.thinCheck.ok) problems.push(`thin_check: ${report.thinCheck.summary}`);
  if (problems.length > 0) throw new Error(`snapshotter power-cut verification failed:\n  ${problems.join('\n  ')}`);
  const figures = {
    snapshots: expected.size,
    files: seen.files,
    bytes: seen.bytes,
    inFlight,
    openTransaction,
    recoverMs: first.startMs,
    checkMs,
    verifyMs: Date.now() - started,
    thinCheck: report?.thinCheck?.summary,
  };
  log.write('verified', { snapshots: Object.fromEntries(expected), figures });
  process.stdout.write(`power-cut: verified ${JSON.stringify(figures)}\n`);
  if (mode === 'final') {
    const cleaned = await runCli(['--home', home, 'cleanup']);
    if (cleaned.code !== 0) throw new Error(`devmapper cleanup failed (${cleaned.code}): ${cleaned.stderr}`);
    const result = await thinCheckOffline(join(home, 'devicemapper', 'metadata'), { kernel: Kernel.for() });
    log.write('final', { thinCheck: result.summary, ok: result.ran ? result.ok : null });
    if (result.ran && !result.ok) throw new Error(`thin_check on the inactive pool failed:\n${result.output}`);
    process.stdout.write(`power-cut: final ${result.summary}\n`);
    return;
  }
  const second = await serve(home);
  await stream(second.client, log, prng(round), round, expected);
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main().catch((error: unknown) => {
    process.stderr.write(`power-cut snapshots guest: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}
