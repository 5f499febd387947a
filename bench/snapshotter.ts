// The snapshotter part of the guest benchmark: this project's containerd snapshotter (`devmapper
// serve containerd`, registered as the proxy plugin `dmthin`) beside containerd's built-in
// devmapper snapshotter (on a pool of the same size and block size, ext4, base size) and
// overlayfs, all in one containerd and driven by one client through containerd's own snapshots
// service; plus the server called directly (what containerd's proxy costs). Then `ctr images
// import` + `ctr run` + `ctr images rm --sync` of a 10-layer image on each.
//
// Snapshots carry containerd's gc.root label so that GC keeps them until the Remove phase;
// containerd's Remove only drops its own record, the backend's removal happens in the garbage
// collection that follows, so the removal row is the Remove calls plus one synchronous GC
// (`ctr leases rm --sync` of an empty lease), per snapshot.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceMapper } from '../src/ioctl/device-mapper.js';
import { runCli } from '../test/cli-process.js';
import { startContainerd, type Containerd } from '../test/kernel/containerd-helpers.js';
import { startServer, stopServer, type Server } from '../test/kernel/snapshotter-server.js';
import { bulkyImage } from '../test/kernel/oci-test-images.js';
import { run } from '../test/kernel/reference-tools.js';
import { SnapshotsClient } from '../test/snapshots-client.js';
import { GiB, median, MiB, progress, rotate, sparseFile, summarize, type Stats } from './common.js';
import { createBarePool } from './pools.js';
import { measureSnapshotterLoad, type SnapshotterLoadResult } from './snapshotter-load.js';

export const SNAPSHOT_BACKENDS = ['dmthin', 'dmthin direct', 'devmapper', 'overlayfs'] as const;
export type SnapshotBackend = (typeof SNAPSHOT_BACKENDS)[number];
export const SNAPSHOT_OPS = ['prepare', 'commit', 'view', 'remove'] as const;
export type SnapshotOp = (typeof SNAPSHOT_OPS)[number];

export interface ImageRow {
  backend: SnapshotBackend;
  importS: number;
  /** dmthin: the seconds the server spent in the import's RPCs (from its debug log). */
  serverS?: number;
  runS: number;
  removeS: number;
}

export interface SnapshotterResult {
  /** Layers in each backend's chain (and as many views of its top). */
  layers: number;
  /** Latency per call (µs); remove is per snapshot, GC included. */
  ops: Partial<Record<SnapshotBackend, Partial<Record<SnapshotOp, Stats>>>>;
  image: { layers: number; bytes: number; rows: ImageRow[]; rounds: number };
  /** What a ctr process costs by itself (`ctr version`), in the import/run/remove figures too. */
  ctrStartS: number;
  /** 1 and 16 parallel clients: calls/s, p50/p99 per RPC, direct and through containerd beside devmapper (bench/snapshotter-load.ts). */
  load?: SnapshotterLoadResult;
}

// The base holds the full run's image (9 bulky layers of 10 MiB, ext4's own overhead on top):
// at 64M the import failed with ENOSPC at the seventh layer, on both devicemapper backends.
const SIZES = { data: 2 * GiB, metadata: 64 * MiB, base: '256M' };
const GC_ROOT = { 'containerd.io/gc.root': 'bench' };
const NAMESPACE = 'devmapper-test';

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0);
const seconds = (t0: bigint): number => Math.round(ms(t0) / 1e6) / 1000;

interface Bed {
  containerd: Containerd;
  server: Server;
  clients: Record<SnapshotBackend, SnapshotsClient>;
  teardown(): Promise<void>;
}

/** containerd on an ext4 root (overlayfs wants one), the two devmapper pools, the server. */
async function setUp(tmp: string, prefix: string): Promise<Bed> {
  const undo: Array<() => Promise<void> | void> = [];
  const teardown = async () => {
    for (const step of undo.reverse())
      await Promise.resolve()
        .then(step)
        .catch((e) => progress(`snapshotter teardown: ${e}`));
  };
  try {
    const rootFs = join(tmp, 'ctrd-fs');
    const rootImage = join(tmp, 'ctrd-fs.img');
    sparseFile(rootImage, 4 * GiB);
    run('mkfs.ext4', ['-q', '-F', rootImage]);
    mkdirSync(rootFs, { recursive: true });
    run('mount', ['-o', 'loop', rootImage, rootFs]);
    undo.push(() => {
      run('umount', [rootFs]);
      rmSync(rootImage, { force: true });
    });

    const dm = DeviceMapper.open();
    undo.push(() => dm.close());
    const poolName = `${prefix}-ctrd-pool`;
    const pool = createBarePool(dm, join(tmp, 'ctrd-pool'), poolName, SIZES);
    undo.push(() => {
      // containerd's devmapper leaves the devices of snapshots it still has active
      for (const line of run('dmsetup', ['ls']).split('\n')) {
        const name = line.split(/\s+/)[0] ?? '';
        if (name.startsWith(`${poolName}-snap-`)) run('dmsetup', ['--noudevsync', 'remove', name]);
      }
      pool.remove();
      run('dmsetup', ['mknodes']); // drops the stale /dev/mapper nodes
    });
    run('dmsetup', ['mknodes', poolName]); // containerd's devmapper opens /dev/mapper/<pool>; no udev makes it

    const home = join(tmp, 'dmthin-home');
    const init = await runCli(
      [
        '--home',
        home,
        'init',
        '--base-size',
        SIZES.base,
        '--block-size',
        '64K',
        '--loop-data-size',
        String(SIZES.data),
        '--loop-metadata-size',
        String(SIZES.metadata),
      ],
      300_000,
    );
    if (init.code !== 0) throw new Error(`devmapper init: ${init.stderr}`);
    undo.push(async () => {
      await runCli(['--home', home, 'cleanup']);
      rmSync(home, { recursive: true, force: true });
    });
    const socket = join(tmp, 'dmthin.sock');
    const server = await startServer(home, socket, ['--log-level', 'debug']); // per-RPC times for the import breakdown
    undo.push(async () => {
      await stopServer(server);
    });

    const containerd = await startContainerd({
      proxies: { dmthin: socket },
      parentDir: rootFs,
      devmapper: { poolName, rootPath: join(rootFs, 'devmapper'), baseImageSize: '256MB' },
    });
    undo.push(() => containerd.stop());
    const plugins = await containerd.ctr(['plugins', 'ls']);
    for (const name of ['dmthin', 'devmapper', 'overlayfs']) {
      if (!new RegExp(`^io\\.containerd\\.snapshotter\\.v1\\s+${name}\\s.*\\sok\\s*$`, 'm').test(plugins)) {
        const log = containerd
          .logTail(200_000)
          .split('\n')
          .filter((line) => line.includes(name))
          .slice(-15)
          .join('\n');
        throw new Error(`containerd's snapshotter ${name} is not loaded:\n${plugins}\n${log}`);
      }
    }
    const clients = {
      dmthin: new SnapshotsClient(containerd.socket, 'dmthin', NAMESPACE),
      'dmthin direct': new SnapshotsClient(socket, 'dmthin', NAMESPACE),
      devmapper: new SnapshotsClient(containerd.socket, 'devmapper', NAMESPACE),
      overlayfs: new SnapshotsClient(containerd.socket, 'overlayfs', NAMESPACE),
    };
    undo.push(() => {
      for (const client of Object.values(clients)) client.close();
    });
    return { containerd, server, clients, teardown };
  } catch (error) {
    await teardown();
    throw error;
  }
}

/** One synchronous garbage collection in containerd: create a lease, remove it with --sync. */
async function collectGarbage(c: Containerd): Promise<void> {
  const id = (await c.ctr(['leases', 'create'])).trim().split(/\s+/)[0]!;
  await c.ctr(['leases', 'rm', '--sync', id]);
}

/** Prepare+Commit of a chain of `layers`, as many Views of its top, then Remove of all, interleaved across backends. */
async function measureOps(bed: Bed, layers: number): Promise<SnapshotterResult['ops']> {
  const samples = new Map<string, number[]>();
  const add = (backend: SnapshotBackend, op: SnapshotOp, ns: number) => {
    const key = `${backend}\0${op}`;
    (samples.get(key) ?? samples.set(key, []).get(key)!).push(ns);
  };
  const timed = async (backend: SnapshotBackend, op: SnapshotOp, call: () => Promise<unknown>) => {
    const t0 = process.hrtime.bigint();
    await call();
    add(backend, op, ms(t0));
  };
  const backends = [...SNAPSHOT_BACKENDS];
  const name = (backend: SnapshotBackend, what: string) => `bench-${backend.replace(' ', '-')}-${what}`;
  for (let i = 0; i < layers; i++) {
    for (const backend of backends) {
      const client = bed.clients[backend];
      const parent = i === 0 ? '' : name(backend, `layer-${i - 1}`);
      await timed(backend, 'prepare', () => client.prepare(name(backend, `active-${i}`), parent, GC_ROOT));
      await timed(backend, 'commit', () =>
        client.commit(name(backend, `layer-${i}`), name(backend, `active-${i}`), GC_ROOT),
      );
    }
  }
  for (let i = 0; i < layers; i++) {
    for (const backend of backends) {
      await timed(backend, 'view', () =>
        bed.clients[backend].view(name(backend, `view-${i}`), name(backend, `layer-${layers - 1}`), GC_ROOT),
      );
    }
  }
  // Removal: the direct server removes for real at once; through containerd, Remove drops the
  // record and the GC removes from the backend, so each backend's calls and one GC are timed together.
  // The direct calls go first: containerd's GC removes what its backend holds that containerd
  // did not make, and the direct snapshots live in the same home as containerd's dmthin ones.
  for (const backend of ['dmthin direct', ...backends.filter((b) => b !== 'dmthin direct')] as const) {
    const client = bed.clients[backend];
    const keys = [
      ...Array.from({ length: layers }, (_, i) => name(backend, `view-${i}`)),
      ...Array.from({ length: layers }, (_, i) => name(backend, `layer-${layers - 1 - i}`)),
    ];
    const t0 = process.hrtime.bigint();
    for (const key of keys) await client.remove(key);
    if (backend !== 'dmthin direct') await collectGarbage(bed.containerd);
    const perSnapshot = ms(t0) / keys.length;
    for (let i = 0; i < keys.length; i++) add(backend, 'remove', perSnapshot);
  }
  const ops: SnapshotterResult['ops'] = {};
  for (const [key, values] of samples) {
    const [backend, op] = key.split('\0') as [SnapshotBackend, SnapshotOp];
    ops[backend] ??= {};
    ops[backend][op] = summarize(values);
  }
  return ops;
}

/** The time the server's debug log reports for the RPCs in `log` ("Prepare "k" ok 12.3 ms"). */
function rpcSeconds(log: string): number {
  let ms = 0;
  for (const match of log.matchAll(/ ok ([0-9.]+) ms$/gm)) ms += Number(match[1]);
  return Math.round(ms) / 1000;
}

/** Median of each backend's import, run and rm over `rounds`, in a rotated order after one untimed warm-up. */
async function measureImage(bed: Bed, tmp: string, quick: boolean): Promise<SnapshotterResult['image']> {
  const layers = 10;
  const image = await bulkyImage('example.com/devmapper/bench:10', layers - 1, (quick ? 1 : 10) * MiB);
  const tarFile = join(tmp, 'bench-image.tar');
  writeFileSync(tarFile, image.tarball);
  const c = bed.containerd;
  const backends = ['dmthin', 'devmapper', 'overlayfs'] as const;
  // Each round ingests the blobs again (rm --sync collects them), so every backend pays the same
  // content-store work; the warm-up takes the cold page cache and first-use costs.
  const once = async (backend: (typeof backends)[number]): Promise<ImageRow> => {
    const mark = bed.server.output().length;
    let t0 = process.hrtime.bigint();
    await c.ctr(['images', 'import', '--snapshotter', backend, tarFile], 600_000);
    const importS = seconds(t0);
    const serverS = backend === 'dmthin' ? rpcSeconds(bed.server.output().slice(mark)) : undefined;
    t0 = process.hrtime.bigint();
    await c.ctr(['run', '--rm', '--snapshotter', backend, image.name, `bench-${backend}`, 'true'], 300_000);
    const runS = seconds(t0);
    t0 = process.hrtime.bigint();
    await c.ctr(['images', 'rm', '--sync', image.name], 300_000);
    return { backend, importS, serverS, runS, removeS: seconds(t0) };
  };
  progress('snapshotter: image warm-up on overlayfs');
  await once('overlayfs');
  const rounds = quick ? 1 : 3;
  const all: ImageRow[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const backend of rotate(backends, round)) {
      progress(`snapshotter: image round ${round + 1}/${rounds} on ${backend}`);
      all.push(await once(backend));
    }
  }
  rmSync(tarFile, { force: true });
  const rows = backends.map((backend) => {
    const mine = all.filter((r) => r.backend === backend);
    const server = mine.flatMap((r) => (r.serverS === undefined ? [] : [r.serverS]));
    return {
      backend,
      importS: median(mine.map((r) => r.importS)),
      serverS: server.length ? median(server) : undefined,
      runS: median(mine.map((r) => r.runS)),
      removeS: median(mine.map((r) => r.removeS)),
    };
  });
  return { layers, bytes: image.tarball.length, rows, rounds };
}

export async function measureSnapshotter(options: {
  quick: boolean;
  tmp: string;
  prefix: string;
}): Promise<SnapshotterResult> {
  const bed = await setUp(options.tmp, options.prefix);
  try {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 3; i++) await bed.containerd.ctr(['version']);
    const ctrStartS = seconds(t0) / 3;
    const layers = options.quick ? 8 : 40;
    progress(`snapshotter: ${layers} layers and views on ${SNAPSHOT_BACKENDS.join(', ')}`);
    const ops = await measureOps(bed, layers);
    const image = await measureImage(bed, options.tmp, options.quick);
    progress('snapshotter: under load, 1 and 16 clients, direct and through containerd beside devmapper');
    const load = await measureSnapshotterLoad({
      quick: options.quick,
      tmp: options.tmp,
      through: { containerd: bed.containerd, collectGarbage: () => collectGarbage(bed.containerd) },
    });
    return { layers, ops, image, ctrStartS, load };
  } finally {
    await bed.teardown();
  }
}
