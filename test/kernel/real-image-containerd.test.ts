// The real Debian image (test/real-image/build.ts) through a real engine: containerd 1.6 imports
// it with `ctr images import --snapshotter dmthin` into `devmapper serve containerd` (containerd
// unpacks each layer into a snapshot the server prepared, then commits it), and `ctr run` starts
// a container on it: dpkg --verify, the top layer's changes and useradd hold as they do under
// runc (real-image-helpers.ts). Then the image goes, containerd's GC removes every snapshot, and
// the home is left with no layer, check clean, nothing leaked.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REAL_IMAGE_NAME, REAL_IMAGE_TARBALL, realImageUnavailable } from '../real-image/build.js';
import { type Containerd, ensureCgroup2, startContainerd, stopAllContainerd } from './containerd-helpers.js';
import {
  cliJson,
  initHome,
  killAllServers,
  runCli,
  type Server,
  startServer,
  stopServer,
} from './snapshotter-server.js';
import { dmNames, eventually, loopLines, newHome, removeHomes } from './driver-helpers.js';
import { assertDebianContainer, CONTAINER_SCRIPT } from './real-image-helpers.js';
import { assertKernelTestBed } from './reference-tools.js';

assertKernelTestBed();

const SNAPSHOTTER = 'dmthin';
const unavailable = realImageUnavailable();

interface World {
  home: string;
  work: string;
  server: Server;
  containerd: Containerd;
  dmBefore: string[];
  loopsBefore: string[];
}
let world: World | undefined;
let setupError: Error | undefined;
const w = (): World => {
  if (!world) throw new Error(`the containerd test bed did not come up: ${setupError?.message ?? 'unknown reason'}`);
  return world;
};

const snapshotKeys = async (): Promise<string[]> =>
  (await w().containerd.ctr(['snapshots', '--snapshotter', SNAPSHOTTER, 'ls']))
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((key) => key !== '');

if (unavailable) {
  test.skip(`the real Debian image through containerd: ${unavailable}`, () => undefined);
} else {
  test.before(async () => {
    try {
      const dmBefore = dmNames();
      const loopsBefore = loopLines();
      const home = newHome('real-ctrd');
      const work = mkdtempSync(join(tmpdir(), 'real-ctrd-'));
      const socket = join(work, 'dmthin.sock');
      await initHome(home, { baseSize: '1G', loopDataSize: '4G', loopMetadataSize: '64M' });
      const server = await startServer(home, socket);
      const containerd = await startContainerd({ proxies: { [SNAPSHOTTER]: socket } });
      world = { home, work, server, containerd, dmBefore, loopsBefore };
    } catch (error) {
      setupError = error as Error;
    }
  });

  test.after.always(async () => {
    await stopAllContainerd();
    await killAllServers();
    if (world) {
      await runCli(['--home', world.home, 'cleanup']);
      rmSync(world.work, { recursive: true, force: true });
    }
    removeHomes();
  });

  test.serial('ctr images import of Debian minbase unpacks its two layers into committed snapshots', async (t) => {
    t.timeout(15 * 60_000);
    const started = Date.now();
    const out = await w().containerd.ctr(
      ['images', 'import', '--snapshotter', SNAPSHOTTER, REAL_IMAGE_TARBALL],
      12 * 60_000,
    );
    t.log(`ctr images import: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    t.regex(out, /unpacking .*done/);
    t.true((await w().containerd.ctr(['images', 'ls', '-q'])).split('\n').includes(REAL_IMAGE_NAME));
    t.is((await snapshotKeys()).length, 2, 'one committed snapshot per layer');
  });

  test.serial(
    "ctr run on it: dpkg --verify finds every installed file as dpkg recorded it; the top layer's changes hold; useradd works",
    async (t) => {
      t.timeout(10 * 60_000);
      ensureCgroup2();
      const out = await w().containerd.ctr(
        [
          'run',
          '--rm',
          '--snapshotter',
          SNAPSHOTTER,
          REAL_IMAGE_NAME,
          `real-${process.pid}`,
          'sh',
          '-c',
          CONTAINER_SCRIPT,
        ],
        8 * 60_000,
      );
      assertDebianContainer(t, out);
    },
  );

  test.serial("images rm: containerd's GC removes every snapshot; no layer is left, check is clean", async (t) => {
    t.timeout(5 * 60_000);
    await w().containerd.ctr(['images', 'rm', '--sync', REAL_IMAGE_NAME]);
    t.true(await eventually(async () => (await snapshotKeys()).length === 0, 120_000, 500), 'every snapshot collected');
    await stopAllContainerd();
    t.is(await stopServer(w().server), 0, 'the server exits cleanly on SIGTERM');
    const layers = await cliJson<Array<{ id: string }>>(w().home, ['ls']);
    // the snapshotter's layers are ctrd-<n>; ctrd-base, the empty parent of first layers, stays
    t.deepEqual(
      layers.map((l) => l.id).filter((id) => /^ctrd-[0-9]+$/.test(id)),
      [],
      'no snapshot layer is left in the home',
    );
    t.true(layers.length > 0 && layers.length <= 1, `only the snapshotter's base is left: ${JSON.stringify(layers)}`);
    const check = await runCli(['--home', w().home, 'check']);
    t.is(check.code, 0, check.stdout + check.stderr);
    t.is((await runCli(['--home', w().home, 'cleanup'])).code, 0);
    t.deepEqual(dmNames(), w().dmBefore, 'no dm device left');
    t.deepEqual(loopLines(), w().loopsBefore, 'no loop device left');
  });
}
