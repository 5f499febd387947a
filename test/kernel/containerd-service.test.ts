// The containerd snapshotter's gRPC service against the real kernel, driven the way containerd
// drives it: a grpc-js client on the unix socket, the returned mounts mounted with mount(8).
// Checked from outside: dmsetup's device list, /proc/self/mounts, the record files on disk.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Driver } from '../../src/driver/driver.js';
import { dir, mountAt, rejects, serve, served, stop, tearDownAll, teardown, wireNs } from './containerd-service-bed.js';
import { assertKernelTestBed, dmsetup } from './reference-tools.js';
import { SMALL, assertNothingLeaked, driverDmNames, metadataSnapshot, mountsUnder } from './driver-helpers.js';

assertKernelTestBed();
test.after.always(tearDownAll);

test.serial('prepare, write, commit, prepare on it, view: the data and kinds containerd expects', async (t) => {
  const s = await serve();
  const { client } = s;
  const labels = { 'containerd.io/gc.root': 'x' };
  const active = 'default/1/extract-layer1';
  const mounts = await client.prepare(active, '', labels);
  t.is(mounts.length, 1);
  t.is(mounts[0]!.type, 'ext4');
  t.true(statSync(mounts[0]!.source).isBlockDevice(), `${mounts[0]!.source} is a block device node (no udev needed)`);
  t.false(mounts[0]!.options.includes('ro'));
  const a = dir(s, active);
  mountAt(mounts, a);
  t.deepEqual(
    execFileSync('ls', ['-A', a], { encoding: 'utf8' }),
    '',
    'a parentless snapshot starts empty (no lost+found)',
  );
  t.is(statSync(a).mode & 0o777, 0o755, 'its root is 0755');
  writeFileSync(join(a, 'layer1'), 'one\n');
  execFileSync('umount', [a]);
  t.is((await client.stat(active)).kind, 'ACTIVE');

  await client.commit('layer1', active, { committed: 'yes' });
  const committed = await client.stat('layer1');
  t.like(committed, { name: 'layer1', parent: '', kind: 'COMMITTED', labels: { committed: 'yes' } });
  await rejects(t, client.stat(active), grpc.status.NOT_FOUND, active, 'the key is gone after commit');
  const layers = await s.driver.list();
  const layer1 = layers.find((l) => (l.meta as any)?.containerd?.name === 'layer1');
  t.truthy(layer1, 'the committed snapshot is a Driver layer');
  t.false(layer1!.activated, 'a committed layer holds no device');
  t.false(driverDmNames().includes(layer1!.deviceName), 'its dm device is gone');

  const child = await client.prepare('default/2/child', 'layer1');
  const c = dir(s, 'child');
  mountAt(child, c);
  t.is(readFileSync(join(c, 'layer1'), 'utf8'), 'one\n', "the child sees the parent's file");
  writeFileSync(join(c, 'layer2'), 'two\n');
  execFileSync('umount', [c]);
  await client.commit('layer2', 'default/2/child');
  t.is((await client.stat('layer2')).parent, 'layer1');

  const view = await client.view('default/3/view', 'layer2');
  t.true(view[0]!.options.includes('ro'), 'a view mounts read-only');
  const v = dir(s, 'view');
  mountAt(view, v);
  t.deepEqual(execFileSync('ls', ['-A', v], { encoding: 'utf8' }).split('\n').filter(Boolean).sort(), [
    'layer1',
    'layer2',
  ]);
  t.throws(() => writeFileSync(join(v, 'nope'), 'x'), { code: 'EROFS' });
  t.is((await client.stat('default/3/view')).kind, 'VIEW');
  t.deepEqual(await client.mounts('default/3/view'), view, 'Mounts answers what View did');
  execFileSync('umount', [v]);

  const usage = await client.usage('layer2');
  t.true(usage.size > 0n, `a committed layer that wrote a file uses bytes (${usage.size})`);
  await rejects(t, client.remove('layer1'), grpc.status.FAILED_PRECONDITION, 'layer1', 'a parent cannot be removed');
  await client.remove('default/3/view');
  await client.remove('layer2');
  await client.remove('layer1');
  t.deepEqual(
    (await client.list()).map((i) => i.name),
    [],
  );
  await teardown(s);
});

test.serial('List: containerd filter syntax (kind, name, parent, labels, ~=, several filters)', async (t) => {
  const s = await serve();
  const { client } = s;
  await client.prepare('tmp-a', '', { 'containerd.io/snapshot.ref': 'sha256:aaa', tier: 'base' });
  await client.commit('base', 'tmp-a', { tier: 'base', 'a.b/c': 'dotted' });
  await client.prepare('active-1', 'base', { tier: 'top' });
  await client.view('view-1', 'base', { tier: 'view' });
  const names = async (...filters: string[]): Promise<string[]> =>
    (await client.list(filters)).map((i) => i.name).sort();
  t.deepEqual(await names(), ['active-1', 'base', 'view-1']);
  t.deepEqual(await names('kind==committed'), ['base']);
  t.deepEqual(await names('kind==active'), ['active-1']);
  t.deepEqual(await names('kind!=committed'), ['active-1', 'view-1']);
  t.deepEqual(await names('parent==base'), ['active-1', 'view-1']);
  t.deepEqual(await names('name~=^act'), ['active-1']);
  t.deepEqual(await names('labels.tier==top'), ['active-1']);
  t.deepEqual(await names('labels."a.b/c"==dotted'), ['base']);
  t.deepEqual(await names('labels."a.b/c"'), ['base'], 'presence of a label');
  t.deepEqual(await names('parent==base,labels.tier==view'), ['view-1'], 'a comma is AND');
  t.deepEqual(await names('kind==committed', 'kind==view'), ['base', 'view-1'], 'several filters are OR');
  t.deepEqual(await names('labels.tier=="top"'), ['active-1'], 'quoted value');
  await rejects(t, client.list(['labels.==']), grpc.status.INVALID_ARGUMENT, 'labels.==', 'a malformed filter');
  await rejects(t, client.list(['name~=(']), grpc.status.INVALID_ARGUMENT, 'name~=(', 'a bad regular expression');
  await teardown(s);
});

test.serial(
  'Update honours field paths; bad input is a clear gRPC error and changes nothing on disk or in the kernel',
  async (t) => {
    const s = await serve();
    const { client } = s;
    await client.prepare('k', '', { keep: '1', drop: '2' });
    await client.commit('c', 'k', { keep: '1', drop: '2' });
    await client.prepare('busy', 'c');
    const before = await client.stat('c');
    await new Promise((r) => setTimeout(r, 5));
    const one = await client.update({ name: 'c', labels: { keep: 'changed', extra: 'no' } }, [
      'labels.keep',
      'labels.drop',
    ]);
    t.deepEqual(one.labels, { keep: 'changed' }, 'labels.<key> sets or removes one label, nothing else');
    t.is(one.created_at.seconds, before.created_at.seconds);
    t.true(wireNs(one.updated_at) > wireNs(before.updated_at), 'Update moves the updated time on');
    t.deepEqual((await client.update({ name: 'c', labels: { a: 'b' } }, ['labels'])).labels, { a: 'b' });
    t.deepEqual((await client.stat('c')).labels, { a: 'b' }, 'persisted');

    await client.view('v', 'c');
    const metadata = metadataSnapshot(s.home);
    const devices = driverDmNames();
    const long = 'x'.repeat(5000);
    await rejects(
      t,
      client.update({ name: 'c', labels: {} }, ['parent']),
      grpc.status.INVALID_ARGUMENT,
      'parent',
      'only labels can be updated',
    );
    await rejects(t, client.stat('nope'), grpc.status.NOT_FOUND, 'nope', 'unknown key');
    await rejects(t, client.mounts('nope'), grpc.status.NOT_FOUND, 'nope', 'Mounts of an unknown key');
    await rejects(t, client.remove('nope'), grpc.status.NOT_FOUND, 'nope', 'Remove of an unknown key');
    await rejects(t, client.usage('nope'), grpc.status.NOT_FOUND, 'nope', 'Usage of an unknown key');
    await rejects(t, client.prepare('busy', 'c'), grpc.status.ALREADY_EXISTS, 'busy', 'a key that exists');
    await rejects(t, client.prepare('c', ''), grpc.status.ALREADY_EXISTS, '"c"', 'a key that is a committed name');
    await rejects(t, client.prepare('x', 'busy'), grpc.status.INVALID_ARGUMENT, 'busy', 'an active parent');
    await rejects(t, client.prepare('x', 'missing'), grpc.status.NOT_FOUND, 'missing', 'a parent that does not exist');
    await rejects(t, client.view('x', 'busy'), grpc.status.INVALID_ARGUMENT, 'busy', 'a view of an active snapshot');
    await rejects(t, client.commit('again', 'k'), grpc.status.NOT_FOUND, '"k"', 'a second commit of the same key');
    await rejects(t, client.commit('c', 'busy'), grpc.status.ALREADY_EXISTS, '"c"', 'commit onto a name that exists');
    await rejects(t, client.mounts('c'), grpc.status.FAILED_PRECONDITION, '"c"', 'Mounts of a committed snapshot');
    await rejects(t, client.prepare(long, ''), grpc.status.INVALID_ARGUMENT, 'key', 'an over-long key');
    await rejects(t, client.prepare('', ''), grpc.status.INVALID_ARGUMENT, 'key', 'an empty key');
    await rejects(t, client.prepare('y', '', { big: long }), grpc.status.INVALID_ARGUMENT, 'big', 'an over-long label');
    await rejects(
      t,
      client.commit('fromview', 'v'),
      grpc.status.FAILED_PRECONDITION,
      '"v"',
      'a view cannot be committed',
    );
    t.deepEqual(metadataSnapshot(s.home), metadata, 'no record changed');
    t.deepEqual(driverDmNames(), devices, 'no dm device appeared or went');

    // Frames containerd would never send: a key whose length runs past the frame, a huge length,
    // a bad wire type, a truncated label entry. Each refused; the server keeps serving.
    for (const frame of [
      [0x12, 0x05, 0x61],
      [0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01],
      [0x0f],
      [0x12, 0x01, 0x61, 0x22, 0x03, 0x0a, 0x09, 0x61],
    ]) {
      const error = await new Promise<grpc.ServiceError | null>((resolve) => {
        s.client.raw.makeUnaryRequest(
          '/containerd.services.snapshots.v1.Snapshots/Prepare',
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from(frame),
          (e: grpc.ServiceError | null) => resolve(e),
        );
      });
      t.truthy(error, `frame ${Buffer.from(frame).toString('hex')} is refused`);
      t.not(error?.code, grpc.status.OK);
    }
    // An unknown field (a newer containerd's) is skipped, as protobuf requires.
    const withUnknown = Buffer.concat([
      Buffer.from([0x12, 0x07]),
      Buffer.from('unknown'),
      Buffer.from([0xf8, 0x07, 0x01]),
    ]);
    const accepted = await new Promise<grpc.ServiceError | null>((resolve) => {
      s.client.raw.makeUnaryRequest(
        '/containerd.services.snapshots.v1.Snapshots/Stat',
        (b: Buffer) => b,
        (b: Buffer) => b,
        withUnknown,
        (e: grpc.ServiceError | null) => resolve(e),
      );
    });
    t.is(accepted?.code, grpc.status.NOT_FOUND, 'decoded: Stat of "unknown" is NOT_FOUND');
    t.is((await client.stat('c')).name, 'c', 'and the server still answers');
    t.deepEqual(metadataSnapshot(s.home), metadata);
    await client.remove('v');
    await client.remove('busy');
    await client.remove('c');
    await teardown(s);
  },
);

test.serial(
  'parallel calls: 16 layers unpacked at once, chains committed, removed in parallel — no error, nothing left',
  async (t) => {
    const s = await serve();
    const { client } = s;
    const chains = 8;
    const depth = 3;
    await Promise.all(
      Array.from({ length: chains }, async (_, c) => {
        let parent = '';
        for (let d = 0; d < depth; d++) {
          const key = `default/${c}-${d}/extract`;
          await client.prepare(key, parent);
          await client.commit(`chain${c}-layer${d}`, key);
          parent = `chain${c}-layer${d}`;
        }
      }),
    );
    // The same key asked for twice at once: exactly one wins.
    const race = await Promise.allSettled([client.prepare('same', ''), client.prepare('same', '')]);
    t.is(race.filter((r) => r.status === 'fulfilled').length, 1);
    t.is((race.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason.code, grpc.status.ALREADY_EXISTS);
    t.is((await client.list(['kind==committed'])).length, chains * depth);
    // Every chain removed top-down, the chains in parallel.
    await Promise.all(
      Array.from({ length: chains }, async (_, c) => {
        for (let d = depth - 1; d >= 0; d--) await client.remove(`chain${c}-layer${d}`);
      }),
    );
    await client.remove('same');
    t.deepEqual(await client.list(), []);
    const left = (await s.driver.list()).filter((l) => l.id.startsWith('ctrd-') && l.id !== 'ctrd-base');
    t.deepEqual(left, [], 'no layer left behind');
    await teardown(s);
  },
);

test.serial(
  "stopping the server leaves containerd's mounts in place; a new server adopts every snapshot",
  async (t) => {
    let s = await serve();
    const home = s.home;
    await s.client.prepare('p', '');
    await s.client.commit('base', 'p');
    const mounts = await s.client.prepare('running', 'base', { l: '1' });
    const rootfs = dir(s, 'running');
    mountAt(mounts, rootfs);
    writeFileSync(join(rootfs, 'written'), 'by the container\n');
    const work = s.work;
    await stop(s);
    t.true(mountsUnder(work).includes(rootfs), 'the rootfs is still mounted after the server stopped');
    writeFileSync(join(rootfs, 'later'), 'still writable\n');

    s = await serve(home);
    rmSync(s.work, { recursive: true, force: true });
    s.work = work;
    t.like(await s.client.stat('running'), { kind: 'ACTIVE', parent: 'base', labels: { l: '1' } });
    t.like(await s.client.stat('base'), { kind: 'COMMITTED' });
    t.deepEqual(await s.client.mounts('running'), mounts, 'the same device is handed out again');
    t.is(readFileSync(join(rootfs, 'written'), 'utf8'), 'by the container\n');
    execFileSync('umount', [rootfs]);
    await s.client.commit('top', 'running');
    const v = dir(s, 'top-view');
    mountAt(await s.client.view('top-view', 'top'), v);
    t.is(
      readFileSync(join(v, 'later'), 'utf8'),
      'still writable\n',
      'what was written while no server ran is in the commit',
    );
    execFileSync('umount', [v]);
    for (const key of ['top-view', 'top', 'base']) await s.client.remove(key);
    await teardown(s);
  },
);

test.serial(
  'during a Commit, Stat and List show the active snapshot as it was; the name appears when it is done',
  async (t) => {
    const s = await serve();
    const { client, driver } = s;
    await client.prepare('k', '', { l: 'v' });
    // Holds the commit inside its window (after the checks, before the record write) on the real driver.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let entered!: () => void;
    const inWindow = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const mappedBytes = driver.mappedBytes.bind(driver);
    driver.mappedBytes = async (id: string) => {
      entered();
      await gate;
      return mappedBytes(id);
    };
    const committing = client.commit('c', 'k');
    try {
      await inWindow;
      const during = await client.stat('k').catch((error: grpc.ServiceError) => error.details);
      t.like(during, { name: 'k', kind: 'ACTIVE', labels: { l: 'v' } }, 'Stat of the key answers the active snapshot');
      t.deepEqual(
        (await client.list()).map((i) => `${i.name} ${i.kind}`),
        ['k ACTIVE'],
        'List shows the key, not the name being made',
      );
      await rejects(t, client.stat('c'), grpc.status.NOT_FOUND, '"c"', 'the name is not there before the commit is');
    } finally {
      release(); // a failed check must not leave the commit (and the teardown after it) waiting
      await committing;
      driver.mappedBytes = mappedBytes;
    }
    t.like(await client.stat('c'), { name: 'c', kind: 'COMMITTED' });
    await rejects(t, client.stat('k'), grpc.status.NOT_FOUND, '"k"', 'the key is gone once committed');
    await teardown(s);
  },
);

test.serial('check names the containerd snapshot of a layer whose thin id went missing', async (t) => {
  const s = await serve();
  const home = s.home;
  await s.client.prepare('work', '');
  await s.client.commit('default/7/sha256:gone', 'work');
  await stop(s);
  // Delete the committed snapshot's thin id behind the driver's back (it holds no dm device).
  let driver = await Driver.init({ home, ...SMALL });
  const layer = (await driver.list()).find(
    (l) => (l.meta?.containerd as { name?: string } | undefined)?.name === 'default/7/sha256:gone',
  );
  await driver.close();
  t.truthy(layer, 'the snapshot has a layer');
  const pool = driverDmNames().find((name) => name.endsWith(`-${statSync(home).ino}-pool`));
  t.truthy(pool, "the home's pool is active");
  dmsetup('message', pool!, '0', `delete ${layer!.deviceId}`);
  const report = await Driver.check({ home, ...SMALL });
  t.deepEqual(report.missingThinIds, [{ layer: layer!.id, deviceId: layer!.deviceId }]);
  t.like(
    report.layerMeta[layer!.id],
    { containerd: { name: 'default/7/sha256:gone', kind: 'committed' } },
    'the report carries the snapshot it was',
  );
  t.false(report.clean);
  await Driver.check({ home, ...SMALL }, { repair: true }); // sets the record aside (quarantine)
  driver = await Driver.init({ home, ...SMALL });
  await driver.cleanup();
});

test.serial('nothing leaked', (t) => {
  t.is(served.length, 0, 'every test tore its server down');
  assertNothingLeaked(t);
});
