// The thin layer against a real kernel, the pool: ThinPool on LoopbackStorage created and
// adopted (its table and status against dmsetup's), its loops detached and re-attached with
// thin ids and data kept, the transaction id's compare-and-swap, the metadata snapshot. Pools
// live on sparse files in the file's private directory (thin-helpers.ts); dmsetup, losetup,
// mkfs and mount are independent reference tools. Every test cleans up in t.teardown; the last
// test checks that nothing of ours is left: no dm device, loop device or mount.
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DevmapperError } from '../../src/errors.js';
import { DeviceMapper } from '../../src/ioctl/device-mapper.js';
import { LoopDevices } from '../../src/ioctl/loop.js';
import { LoopbackStorage } from '../../src/thin/loopback.js';
import { ThinPool } from '../../src/thin/pool.js';
import { dmsetup, run } from './reference-tools.js';
import {
  MiB,
  activate,
  assertNothingOfOursLeft,
  big,
  dm,
  loopsUnder,
  makePool,
  mkfs,
  mount,
  ok,
  referencePoolStatus,
  root,
  throwsSystem,
  umount,
  unique,
  until,
  useThinBed,
} from './thin-helpers.js';

useThinBed({ leakCheckHook: false });

test.serial(
  'pool on loop files: created, adopted from a fresh handle with the same table, status matches dmsetup',
  (t) => {
    const dataSize = 96 * MiB;
    const { storage, pool } = makePool(t, 'create', {
      dataSize,
      dataBlockSize: 256,
      lowWaterMark: 20,
      features: { skipBlockZeroing: true, errorIfNoSpace: true },
    });
    t.true(storage.data.created);
    t.true(storage.metadata.created);
    t.true(storage.data.loop.autoclear, 'attached with autoclear');
    t.regex(storage.data.loop.path, /^\/dev\/loop\d+$/);
    t.is(loopsUnder(storage.data.file).length, 1, 'losetup sees the data file attached');

    // The kernel echoes the table as the library wrote it.
    const line = dmsetup('table', pool.name).trim();
    t.is(
      line,
      `0 ${dataSize / 512} thin-pool ${pool.table.metadataDev} ${pool.table.dataDev} 256 20 2 skip_block_zeroing error_if_no_space`,
    );
    t.is(big(pool.length), BigInt(dataSize / 512));

    const other = DeviceMapper.open();
    t.teardown(() => other.close());
    const adopted = ThinPool.adopt(other, pool.name, { dataBlockSize: 256 });
    t.deepEqual(adopted.table, pool.table);
    t.is(big(adopted.table.dataBlockSize), 256n);
    t.is(big(adopted.table.lowWaterMark), 20n);
    t.deepEqual(adopted.table.features, {
      skipBlockZeroing: true,
      ignoreDiscard: false,
      noDiscardPassdown: false,
      readOnly: false,
      errorIfNoSpace: true,
    });
    t.is(big(adopted.length), big(pool.length));
    t.is(adopted.devno, pool.devno);

    const mismatch = t.throws(() => ThinPool.adopt(other, pool.name, { dataBlockSize: 128 }), {
      instanceOf: DevmapperError,
    });
    t.is(mismatch?.code, 'ERR_DM_POOL_MISMATCH');

    pool.createThin(0);
    const thin = activate(t, pool, 0, 16);
    const notAPool = t.throws(() => ThinPool.adopt(other, thin.name), { instanceOf: DevmapperError });
    t.is(notAPool?.code, 'ERR_DM_NOT_A_POOL');

    const status = ok(adopted.status({ committed: true }));
    t.is(big(status.transactionId), 0n);
    t.is(big(status.data.totalBlocks), BigInt(dataSize / (256 * 512)));
    t.is(big(status.data.usedBlocks), 0n);
    t.is(big(status.data.freeBlocks), big(status.data.totalBlocks));
    t.is(big(status.data.blockSize!), 256n);
    t.is(big(status.data.totalBytes!), BigInt(dataSize));
    t.is(big(status.metadata.totalBlocks), BigInt((8 * MiB) / 4096));
    t.true(status.metadata.usedBlocks > 0n);
    t.is(status.mode, 'rw');
    t.is(status.noSpace, 'error');
    t.is(status.heldMetadataRoot, null);
    t.is(status.needsCheck, false);
    t.deepEqual(referencePoolStatus(pool), status, 'dmsetup status parses to the same figures');
  },
);

test.serial(
  're-attach: after the pool goes the loops detach; open finds the files, reopen keeps thin ids and data',
  async (t) => {
    const dir = join(root, unique('reattach'));
    const first = makePool(t, 'reattach', { dir, dataSize: 64 * MiB, features: { skipBlockZeroing: true } });
    const { pool, storage } = first;
    pool.createThin(1);
    pool.createThin(5);
    pool.setTransactionId(0, 42);
    const thin = activate(t, pool, 1, 32);
    mkfs(thin.path);
    const mnt = mount(t, thin.path, 'reattach-mnt');
    writeFileSync(join(mnt, 'kept.txt'), 'survives a re-attach');
    run('sync', []);
    umount(mnt);
    const usedBefore = ok(pool.status({ committed: true })).data.usedBlocks;
    t.is(thin.deactivate(), 'removed');
    pool.deactivate();
    t.false(dm.exists(pool.name));
    const loops = new LoopDevices();
    await until(
      'the loop devices to detach (autoclear)',
      () =>
        loops.findByBackingFile(storage.data.file) === undefined &&
        loops.findByBackingFile(storage.metadata.file) === undefined,
    );
    t.deepEqual(loopsUnder(dir), [], 'losetup lists neither file');

    const storage2 = LoopbackStorage.open({ dir, dataSize: 64 * MiB, metadataSize: 8 * MiB });
    t.teardown(() => storage2.release());
    t.false(storage2.data.created);
    t.false(storage2.metadata.created);
    t.is(storage2.data.file, storage.data.file);
    const pool2 = ThinPool.reopen(dm, unique('reattach-pool'), {
      metadataDevice: storage2.metadata.loop.path,
      dataDevice: storage2.data.loop.path,
      features: { skipBlockZeroing: true },
    });
    t.teardown(() => {
      if (dm.exists(pool2.name)) pool2.deactivate();
    });
    storage2.release();

    const status = ok(pool2.status());
    t.is(big(status.transactionId), 42n, 'the transaction id is in the metadata');
    t.is(big(status.data.usedBlocks), big(usedBefore));
    const exists = throwsSystem(t, () => pool2.createThin(1), 'EEXIST');
    t.true(exists?.message.includes('create_thin 1'), exists?.message);
    throwsSystem(t, () => pool2.createThin(5), 'EEXIST');
    pool2.createThin(2); // a fresh id is still free

    const again = activate(t, pool2, 1, 32, 'reattach-thin');
    const mnt2 = mount(t, again.path, 'reattach-mnt2');
    t.is(readFileSync(join(mnt2, 'kept.txt'), 'utf8'), 'survives a re-attach');

    // A second open while the pool holds the loops reuses them rather than attaching again.
    const storage3 = LoopbackStorage.open({ dir, dataSize: 64 * MiB, metadataSize: 8 * MiB });
    storage3.release();
    t.is(storage3.data.loop.path, storage2.data.loop.path);
    t.is(storage3.metadata.loop.path, storage2.metadata.loop.path);
    t.is(loopsUnder(dir).length, 2);
  },
);

test.serial('transaction id compare-and-swap: set from the current value, refused (EINVAL) when stale', (t) => {
  const { pool } = makePool(t, 'txid', { dataSize: 16 * MiB });
  t.is(big(ok(pool.status()).transactionId), 0n);
  pool.setTransactionId(0, 1);
  t.is(big(ok(pool.status()).transactionId), 1n);
  const stale = throwsSystem(t, () => pool.setTransactionId(0, 2), 'EINVAL');
  t.true(stale?.message.includes('set_transaction_id 0 2'), stale?.message);
  t.is(big(ok(pool.status()).transactionId), 1n);
  t.is(big(referencePoolStatus(pool).transactionId), 1n, 'dmsetup agrees');
  pool.setTransactionId(1n, 2n ** 63n);
  t.is(big(ok(pool.status()).transactionId), 2n ** 63n, 'transaction ids are u64');
});

test.serial(
  'metadata snapshot: reserve holds a root, release drops it; the kernel refuses a second reserve and a spare release',
  (t) => {
    const { pool } = makePool(t, 'metasnap', { dataSize: 16 * MiB });
    t.is(ok(pool.status()).heldMetadataRoot, null);
    pool.reserveMetadataSnap();
    const held = ok(pool.status()).heldMetadataRoot;
    t.not(held, null);
    t.is(referencePoolStatus(pool).heldMetadataRoot, held);
    throwsSystem(t, () => pool.reserveMetadataSnap(), 'EBUSY');
    pool.releaseMetadataSnap();
    t.is(ok(pool.status()).heldMetadataRoot, null);
    throwsSystem(t, () => pool.releaseMetadataSnap(), 'EINVAL');
    pool.reserveMetadataSnap(); // the round trip repeats
    t.not(ok(pool.status()).heldMetadataRoot, null);
    pool.releaseMetadataSnap();
    t.is(ok(pool.status()).heldMetadataRoot, null);
  },
);

test.serial('nothing is left behind: no dm device, loop device or mount of ours', (t) => assertNothingOfOursLeft(t));
