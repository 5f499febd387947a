// Proves the test bed: a real device-mapper kernel, and a whole thin-pool lifecycle in it,
// driven by the reference tools (dmsetup/losetup/mkfs/mount).
import test from 'ava';
import {
  mkdtempSync,
  rmSync,
  readFileSync,
  writeFileSync,
  mkdirSync,
  openSync,
  ftruncateSync,
  closeSync,
  writeSync,
} from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertKernelTestBed, dmsetup, run } from './reference-tools.js';

test.before(() => assertKernelTestBed());

test('the kernel has device-mapper and thin-pool; release and dm version are reported', (t) => {
  const driver = /Driver version:\s+(\d+\.\d+\.\d+)/.exec(dmsetup('version'));
  t.truthy(driver, 'dmsetup version reports the kernel driver version');
  t.log(`kernel ${release()}, dm driver ${driver![1]}`);
  const targets = dmsetup('targets');
  t.regex(targets, /^thin-pool\s+v\d+/m);
  t.regex(targets, /^thin\s+v\d+/m);
});

test('thin pool on loop devices: thin device, ext4, mount, write, snapshot, teardown', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'testbed-'));
  const sparse = (name: string, bytes: number): string => {
    const path = join(dir, name);
    const fd = openSync(path, 'w');
    ftruncateSync(fd, bytes);
    closeSync(fd);
    return path;
  };
  const metaFile = sparse('metadata', 16 << 20);
  const dataFile = sparse('data', 256 << 20);
  const loops: string[] = [];
  const devices: string[] = [];
  const mounts: string[] = [];
  try {
    const metaLoop = run('losetup', ['--find', '--show', metaFile]).trim();
    loops.push(metaLoop);
    const dataLoop = run('losetup', ['--find', '--show', dataFile]).trim();
    loops.push(dataLoop);
    // A new pool needs the first 4 KiB of its metadata device zeroed (thin-provisioning.rst).
    const fd = openSync(metaLoop, 'r+');
    writeSync(fd, Buffer.alloc(4096), 0, 4096, 0);
    closeSync(fd);

    const pool = `testbed-pool-${process.pid}`;
    dmsetup(
      'create',
      pool,
      '--table',
      `0 ${(256 << 20) / 512} thin-pool ${metaLoop} ${dataLoop} 128 32768 1 skip_block_zeroing`,
    );
    devices.push(pool);
    dmsetup('message', pool, '0', 'create_thin 0');
    const thin = `${pool}-thin0`;
    dmsetup('create', thin, '--table', `0 ${(64 << 20) / 512} thin /dev/mapper/${pool} 0`);
    devices.push(thin);
    run('mkfs.ext4', ['-q', '-E', 'nodiscard,lazy_itable_init=1,lazy_journal_init=1', `/dev/mapper/${thin}`]);

    const mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    run('mount', [`/dev/mapper/${thin}`, mnt]);
    mounts.push(mnt);
    writeFileSync(join(mnt, 'hello'), 'from the origin');
    run('sync', []);

    // Snapshot of an active origin: suspend it around create_snap.
    dmsetup('suspend', thin);
    dmsetup('message', pool, '0', 'create_snap 1 0');
    dmsetup('resume', thin);
    const snap = `${pool}-snap1`;
    dmsetup('create', snap, '--table', `0 ${(64 << 20) / 512} thin /dev/mapper/${pool} 1`);
    devices.push(snap);
    writeFileSync(join(mnt, 'hello'), 'changed after the snapshot');

    const snapMnt = join(dir, 'snap');
    mkdirSync(snapMnt);
    run('mount', ['-o', 'ro,noload', `/dev/mapper/${snap}`, snapMnt]);
    mounts.push(snapMnt);
    t.is(readFileSync(join(snapMnt, 'hello'), 'utf8'), 'from the origin');
    t.is(readFileSync(join(mnt, 'hello'), 'utf8'), 'changed after the snapshot');

    const status = dmsetup('status', pool);
    t.regex(status, /thin-pool \d+ \d+\/\d+ \d+\/\d+ /, status);
    t.regex(dmsetup('status', thin), /thin \d+ \d+/);
  } finally {
    for (const m of mounts.reverse()) run('umount', [m]);
    for (const d of devices.reverse()) dmsetup('remove', d);
    for (const l of loops) run('losetup', ['--detach', l]);
    rmSync(dir, { recursive: true, force: true });
  }
  t.is(dmsetup('ls').trim(), 'No devices found', 'teardown leaves no dm device');
  t.is(run('losetup', ['--list', '--noheadings']).trim(), '', 'teardown leaves no loop device');
  t.false(readFileSync('/proc/self/mounts', 'utf8').includes('testbed-'), 'teardown leaves no mount');
});
