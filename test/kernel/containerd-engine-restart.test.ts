// End to end with the real containerd (Debian's 1.6) in the test kernel, the server going away:
// `devmapper serve containerd` stopped while a container runs (the container keeps its rootfs, a
// restarted server adopts its snapshot) and killed with SIGKILL in the middle of an image import
// (a restarted server takes the import again, check is clean); then the teardown, which leaves
// no dm device, loop device or mount. The test bed is containerd-engine-helpers.ts.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, mountsUnder } from './driver-helpers.js';
import { NAMESPACE, shimPids } from './containerd-helpers.js';
import { cliJson, startServer, stopServer } from './snapshotter-server.js';
import {
  assertHomeEmpty,
  assertNothingLeft,
  chainIds,
  checkReport,
  ctrdLayers,
  importImage,
  parsePrintedMount,
  reachesServer,
  removeImageAndCollect,
  runIn,
  seconds,
  snapshotRows,
  snapshots,
  SNAPSHOTTER,
  useEngineBed,
  w,
  withServerStopped,
  type LayerRow,
} from './containerd-engine-helpers.js';
import { bulkyImage } from './oci-test-images.js';

useEngineBed({ leakCheckHook: false });

test.serial('stopping the server while a container runs keeps its rootfs; a restarted server adopts it', async (t) => {
  t.timeout(400_000);
  const c = w().containerd;
  const { image, imageTar } = w();
  await importImage(imageTar);
  const id = `sleeper-${process.pid}`;
  await c.ctr(['run', '-d', '--snapshotter', SNAPSHOTTER, image.name, id, 'sleep', '3600']);
  try {
    t.true(
      await eventually(async () => /RUNNING/.test((await c.ctrResult(['tasks', 'ls'])).stdout), 30_000, 200),
      'the sleeper runs',
    );
    const rootfs = join(c.state, 'io.containerd.runtime.v2.task', NAMESPACE, id, 'rootfs');
    t.deepEqual(mountsUnder(rootfs), [rootfs], 'containerd mounted the container rootfs');
    await c.ctr(['tasks', 'exec', '--exec-id', 'w1', id, 'sh', '-c', 'echo before-stop > /tmp/state']);

    const code = await stopServer(w().server);
    t.is(code, 0, `devmapper serve exits 0 on SIGTERM\n${w().server.output().slice(-2000)}`);
    t.deepEqual(mountsUnder(rootfs), [rootfs], 'the rootfs is still mounted after the server stopped');
    const read = await c.ctr([
      'tasks',
      'exec',
      '--exec-id',
      'r1',
      id,
      'sh',
      '-c',
      'cat /tmp/state /opaque/new1 && echo after-stop >> /tmp/state && cat /tmp/state',
    ]);
    t.is(
      read,
      'before-stop\nthe only file left in opaque\nbefore-stop\nafter-stop\n',
      'the container reads and writes its rootfs with no server',
    );
    const rows = await cliJson<LayerRow[]>(w().home, ['ls']);
    const activeLayers = ctrdLayers(rows).filter(
      (row) => (row.meta?.containerd as { kind?: string } | undefined)?.kind === 'active',
    );
    t.is(
      activeLayers.length,
      1,
      `devmapper ls: one active snapshot layer (the sleeper's): ${JSON.stringify(rows.map((r) => [r.id, r.meta]))}`,
    );

    w().server = await startServer(w().home, w().socket, ['--log-level', 'debug']);
    t.true(await eventually(reachesServer, 30_000, 500), 'containerd reaches the restarted server');
    const snaps = await snapshotRows();
    t.deepEqual(
      snaps.find((r) => r.key === id),
      { key: id, parent: chainIds(image).at(-1)!, kind: 'Active' },
      "the restarted server serves the container's snapshot",
    );
    const usage = await snapshots(['usage', id]);
    t.regex(usage, new RegExp(`^${id}\\s+\\S+`, 'm'), 'usage of the adopted active snapshot answers');
    const mounted = parsePrintedMount(await snapshots(['mounts', '/x', id]));
    t.is(mounted.type, 'ext4', 'mounts of the adopted snapshot answers');
    const after = await c.ctr(['tasks', 'exec', '--exec-id', 'r2', id, 'cat', '/tmp/state']);
    t.is(after, 'before-stop\nafter-stop\n');
  } finally {
    await c.ctrResult(['tasks', 'kill', '-s', 'SIGKILL', id]);
    await eventually(async () => (await c.ctrResult(['tasks', 'delete', id])).code === 0, 30_000, 200);
    await c.ctrResult(['containers', 'delete', id]);
  }
  t.false(
    (await snapshotRows()).some((r) => r.key === id),
    'deleting the container removed its snapshot through the restarted server',
  );
  t.true(await eventually(() => shimPids(c).length === 0, 15_000, 200), 'no shim left for the sleeper');
  await removeImageAndCollect(t, image.name);
  await withServerStopped(t, () => assertHomeEmpty(t, 'after the sleeper'));
});

test.serial(
  'kill -9 of the server in the middle of an import: a restarted server takes the import again, check is clean',
  async (t) => {
    t.timeout(600_000);
    const c = w().containerd;
    const bulky = await bulkyImage('example.com/devmapper/bulky:1', 6, 3 << 20);
    const tarFile = join(w().work, 'bulky.tar');
    writeFileSync(tarFile, bulky.tarball);
    const server = w().server;
    const mark = server.output().length;
    const importing = c.ctrResult(['images', 'import', '--snapshotter', SNAPSHOTTER, tarFile], 300_000);
    // In the middle: two layers committed and the third one prepared (being extracted).
    const inMiddle = await eventually(
      () => {
        const log = server.output().slice(mark);
        const commits = log.split('\n').filter((line) => /Commit .* ok/.test(line)).length;
        const prepares = log.split('\n').filter((line) => /Prepare .* ok/.test(line)).length;
        return commits >= 2 && prepares > commits;
      },
      240_000,
      20,
    );
    t.true(inMiddle, `the server logged two commits and a third prepare:\n${server.output().slice(mark).slice(-3000)}`);
    server.process.kill('SIGKILL');
    t.is(await server.exited, 'SIGKILL');
    const interrupted = await importing;
    t.log(`the interrupted import ended with ${interrupted.code}: ${interrupted.stderr.trim().slice(-300)}`);
    t.not(interrupted.code, 0, 'the import failed with its snapshotter killed');

    w().server = await startServer(w().home, w().socket, ['--log-level', 'debug']);
    t.true(await eventually(reachesServer, 30_000, 500), 'containerd reaches the restarted server');
    const started = Date.now();
    const out = await importImage(tarFile);
    t.log(`second import: ${seconds(started)}`);
    t.regex(out, /unpacking .*done/);
    const committed = (await snapshotRows()).filter((r) => r.kind === 'Committed').map((r) => r.key);
    for (const id of chainIds(bulky)) t.true(committed.includes(id), `layer snapshot ${id} committed`);
    const sums = await runIn(bulky.name, 'sha256sum /bulk/*');
    for (const [path, entry] of bulky.view) {
      if (!path.startsWith('/bulk/')) continue;
      t.true(sums.includes(`${entry.sha256}  ${path}`), `${path} has the image's content`);
    }
    await withServerStopped(t, async () => {
      const report = await checkReport(w().home);
      t.true(report.clean, `devmapper check --json after the crash and the second import: ${JSON.stringify(report)}`);
    });
    // Whatever the killed import left (an active extraction snapshot, its lease) goes with the image.
    await c.ctrResult(['images', 'rm', '--sync', bulky.name]);
    for (const lease of (await c.ctrResult(['leases', 'ls', '-q'])).stdout.split('\n').filter(Boolean))
      await c.ctrResult(['leases', 'rm', '--sync', lease]);
    const leftovers = await snapshotRows();
    for (const row of leftovers.filter((r) => r.kind !== 'Committed'))
      await snapshots(['rm', row.key]).catch(() => undefined);
    t.true(
      await eventually(async () => (await snapshotRows()).length === 0, 60_000, 500),
      `every snapshot is collected: ${JSON.stringify(await snapshotRows())}`,
    );
    await withServerStopped(t, () => assertHomeEmpty(t, 'after the crashed import'));
  },
);

test.serial(
  'teardown: containerd, its shims, the server and the home leave no dm device, loop device or mount',
  async (t) => {
    t.timeout(180_000);
    await assertNothingLeft(t);
  },
);
