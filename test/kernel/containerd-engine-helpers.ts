// The containerd engine tests' test bed (containerd-engine-*.test.ts): each file's world (a
// home served by `devmapper serve containerd` as the proxy snapshotter `dmthin` of a real
// containerd 1.6, the busybox test image's tarball), set up in a before hook and undone in an
// after.always hook; `ctr` with the snapshotter's flag and its snapshot list read back; stopping
// and restarting the server around CLI checks of the home; and the end-of-file check that
// containerd, its shims, the server and the home leave no dm device, loop device or mount.
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertKernelTestBed, run } from './reference-tools.js';
import { dmNames, eventually, loopLines, mountsUnder, newHome, removeHomes, sleep } from './driver-helpers.js';
import {
  assertContainerdTools,
  shimPids,
  startContainerd,
  stopAllContainerd,
  type Containerd,
} from './containerd-helpers.js';
import {
  cliJson,
  initHome,
  killAllServers,
  runCli,
  startServer,
  stopServer,
  type Server,
} from './snapshotter-server.js';
import type { BuiltImage } from './oci-image.js';
import { busyboxTestImage } from './oci-test-images.js';

assertKernelTestBed();
assertContainerdTools();

export const SNAPSHOTTER = 'dmthin';

export interface World {
  home: string;
  socket: string;
  server: Server;
  containerd: Containerd;
  image: BuiltImage;
  imageTar: string;
  work: string;
  dmBefore: string[];
  loopsBefore: string[];
}

let world: World | undefined;
let setupError: Error | undefined;

export function w(): World {
  if (!world) throw new Error(`the containerd test bed did not come up: ${setupError?.message ?? 'unknown reason'}`);
  return world;
}

export const seconds = (since: number): string => `${((Date.now() - since) / 1000).toFixed(1)} s`;

/**
 * Registers the file's hooks: the world set up before its tests; after them (serially, in this
 * order) the leak check when `leakCheckHook` (containerd-engine-restart.test.ts has it as its last
 * test instead), then containerd and the server stopped, the home cleaned up and removed.
 */
export function useEngineBed(options: { leakCheckHook: boolean }): void {
  test.before(async () => {
    try {
      const dmBefore = dmNames();
      const loopsBefore = loopLines();
      const home = newHome('engine');
      const work = mkdtempSync(join(tmpdir(), 'engine-work-'));
      const socket = join(work, 'dmthin.sock');
      const image = await busyboxTestImage();
      const imageTar = join(work, 'image.tar');
      writeFileSync(imageTar, image.tarball);
      await initHome(home);
      const server = await startServer(home, socket, ['--log-level', 'debug']);
      const containerd = await startContainerd({ proxies: { [SNAPSHOTTER]: socket } });
      world = { home, socket, server, containerd, image, imageTar, work, dmBefore, loopsBefore };
    } catch (error) {
      setupError = error as Error;
    }
  });
  if (options.leakCheckHook) {
    test.serial.after.always(
      'nothing left: containerd, its shims, the server and the home leave no dm device, loop device or mount',
      async (t) => {
        t.timeout(180_000);
        await assertNothingLeft(t);
      },
    );
  }
  test.serial.after.always(async () => {
    if (world) {
      await stopAllContainerd();
      await killAllServers();
      await runCli(['--home', world.home, 'cleanup']);
      rmSync(world.work, { recursive: true, force: true });
    } else {
      await stopAllContainerd();
      await killAllServers();
    }
    removeHomes();
  });
}

/** The end-of-file check: containerd and the server stopped, the home cleaned up, nothing of theirs left. */
export async function assertNothingLeft(t: ExecutionContext): Promise<void> {
  const world = w();
  const c = world.containerd;
  const containerdDir = c.dir;
  await c.stop();
  t.deepEqual(mountsUnder(containerdDir), [], "nothing mounted under containerd's root and state");
  t.deepEqual(shimPids(c), [], 'no shim left');
  t.is(await stopServer(world.server), 0, 'the server exits 0 on SIGTERM');
  const cleanup = await runCli(['--home', world.home, 'cleanup']);
  t.is(cleanup.code, 0, `devmapper cleanup: ${cleanup.stderr}`);
  await sleep(100);
  t.deepEqual(dmNames(), world.dmBefore, 'the dm devices are the ones there were before the test');
  t.deepEqual(loopLines(), world.loopsBefore, 'the loop devices are the ones there were before the test');
  t.deepEqual(mountsUnder(world.home), []);
  t.deepEqual(mountsUnder(world.work), []);
}

/** ctr with the snapshotter's flag where ctr wants it. */
export const snapshots = (args: string[]): Promise<string> =>
  w().containerd.ctr(['snapshots', '--snapshotter', SNAPSHOTTER, ...args]);

export interface SnapshotRow {
  key: string;
  parent: string;
  kind: string;
}

export async function snapshotRows(): Promise<SnapshotRow[]> {
  const out = await snapshots(['ls']);
  return out
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length >= 2 && cols[0] !== '')
    .map((cols) =>
      cols.length >= 3
        ? { key: cols[0]!, parent: cols[1]!, kind: cols[2]! }
        : { key: cols[0]!, parent: '', kind: cols[1]! },
    );
}

/** The image's chain ids (containerd names a layer's committed snapshot by its chain id). */
export function chainIds(image: BuiltImage): string[] {
  const ids: string[] = [];
  for (const layer of image.layers) {
    const previous = ids[ids.length - 1];
    ids.push(
      previous === undefined
        ? layer.diffId
        : `sha256:${createHash('sha256').update(`${previous} ${layer.diffId}`).digest('hex')}`,
    );
  }
  return ids;
}

let runCounter = 0;

/** `ctr run --rm --snapshotter dmthin REF ID sh -c SCRIPT`, its stdout. */
export async function runIn(image: string, script: string, timeoutMs = 180_000): Promise<string> {
  const id = `engine-${process.pid}-${++runCounter}`;
  return w().containerd.ctr(['run', '--rm', '--snapshotter', SNAPSHOTTER, image, id, 'sh', '-c', script], timeoutMs);
}

export async function importImage(tarFile: string): Promise<string> {
  return w().containerd.ctr(['images', 'import', '--snapshotter', SNAPSHOTTER, tarFile], 300_000);
}

let probeCounter = 0;

/**
 * Whether containerd's proxy connection reaches the server: a Prepare, which only the server can
 * answer (`ctr snapshots ls` of an empty store never leaves containerd). After a restart
 * containerd redials with backoff, and calls fail with Unavailable until it has.
 */
export async function reachesServer(): Promise<boolean> {
  const key = `ready-probe-${++probeCounter}`;
  const prepared = await w().containerd.ctrResult(['snapshots', '--snapshotter', SNAPSHOTTER, 'prepare', key]);
  if (prepared.code !== 0) return false;
  await snapshots(['rm', key]);
  return true;
}

/** Stops the server (SIGTERM), runs `body` with the home free for the CLI, starts the server again. */
export async function withServerStopped<T>(t: ExecutionContext, body: () => Promise<T>): Promise<T> {
  const world = w();
  const code = await stopServer(world.server);
  t.is(code, 0, `devmapper serve exits 0 on SIGTERM\n${world.server.output().slice(-2000)}`);
  try {
    return await body();
  } finally {
    world.server = await startServer(world.home, world.socket, ['--log-level', 'debug']);
    t.true(await eventually(reachesServer, 30_000, 500), 'containerd reaches the restarted server');
  }
}

export interface LayerRow {
  id: string;
  parent: string | null;
  meta?: Record<string, unknown>;
}

export interface CheckReport {
  clean: boolean;
  [key: string]: unknown;
}

export async function checkReport(home: string): Promise<CheckReport> {
  const result = await runCli(['--home', home, 'check', '--json']);
  if (result.code !== 0 && result.code !== 3)
    throw new Error(`devmapper check --json failed (${result.code}): ${result.stderr}`);
  return JSON.parse(result.stdout) as CheckReport;
}

/** The dm devices of this home: devmapper-<dev>-<inode>-…, with the pool's name. */
export function homeDmNames(home: string): { pool: string; others: string[] } {
  const inode = run('stat', ['-c', '%i', home]).trim();
  const mine = dmNames().filter((name) => new RegExp(`^devmapper-[0-9]+:[0-9]+-${inode}-`).test(name));
  return {
    pool: mine.find((name) => name.endsWith('-pool')) ?? '',
    others: mine.filter((name) => !name.endsWith('-pool')),
  };
}

export const ctrdLayers = (rows: LayerRow[]): LayerRow[] => rows.filter((row) => /^ctrd-[0-9]+$/.test(row.id));

export interface PrintedMount {
  type: string;
  source: string;
  options: string[];
}

/** `ctr snapshots prepare|view|mounts ... --mounts` prints `mount -t TYPE SOURCE TARGET -o OPTIONS`. */
export function parsePrintedMount(out: string): PrintedMount {
  const match = /^mount -t (\S+) (\S+) (\S+) -o ?(.*)$/m.exec(out);
  if (!match) throw new Error(`no mount command in ${JSON.stringify(out)}`);
  return { type: match[1]!, source: match[2]!, options: match[4]!.split(',').filter(Boolean) };
}

/** Removes the image (GC runs with --sync) and waits for the snapshotter to be empty. */
export async function removeImageAndCollect(t: ExecutionContext, name: string): Promise<void> {
  await w().containerd.ctr(['images', 'rm', '--sync', name]);
  const empty = await eventually(async () => (await snapshotRows()).length === 0, 60_000, 500);
  t.true(
    empty,
    `containerd's GC removed every snapshot: ${JSON.stringify(await snapshotRows())}\n${w().containerd.logTail(2000)}`,
  );
}

/** With the server stopped: no containerd layer is left, only the pool is active, check is clean. */
export async function assertHomeEmpty(t: ExecutionContext, what: string): Promise<void> {
  const { home } = w();
  const rows = await cliJson<LayerRow[]>(home, ['ls']);
  t.deepEqual(
    ctrdLayers(rows).map((r) => r.id),
    [],
    `${what}: devmapper ls --json has no snapshot layer left: ${JSON.stringify(rows.map((r) => r.id))}`,
  );
  t.deepEqual(rows.map((r) => r.id).sort(), ['ctrd-base'], `${what}: only the snapshotter's base layer remains`);
  const devices = homeDmNames(home);
  t.not(devices.pool, '', `${what}: the pool is active`);
  t.deepEqual(devices.others, [], `${what}: no dm device of the home besides the pool`);
  const report = await checkReport(home);
  t.true(report.clean, `${what}: devmapper check --json is clean: ${JSON.stringify(report)}`);
  t.deepEqual(mountsUnder(home), [], `${what}: nothing mounted under the home`);
}
