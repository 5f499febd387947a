// LoopDevices against real loop devices, on both FFI backends: what the library attaches and
// reports is checked against sysfs (/sys/block/loopN), the data seen through the device, and
// losetup as the independent reference. Every test detaches what it attached in its
// teardown (helpers.ts Cleanup); the last test checks that no loop device is left.
import test from 'ava';
import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
  truncateSync,
  writeSync,
} from 'node:fs';
import { DmSystemError, InvalidArgumentError } from '../../src/errors.js';
import type { FfiBackendName } from '../../src/ioctl/ffi/binding.js';
import { LoopDevices, type LoopStatus } from '../../src/ioctl/loop.js';
import { BACKENDS, Cleanup, PREFIX, fdCount, sparseFile, sysBlock, waitFor } from './helpers.js';
import { assertKernelTestBed, run } from './reference-tools.js';

test.before(() => assertKernelTestBed());

interface LosetupRow {
  backFile: string;
  offset: string;
  sizeLimit: string;
  autoclear: boolean;
  readOnly: boolean;
}

/** `losetup --list --json` keyed by device path, fields normalised across util-linux versions. */
function losetup(): Map<string, LosetupRow> {
  const out = run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE,OFFSET,SIZELIMIT,AUTOCLEAR,RO']).trim();
  const rows = new Map<string, LosetupRow>();
  if (out === '') return rows; // no loop device: losetup prints nothing at all
  const flag = (v: unknown): boolean => v === true || v === 1 || v === '1';
  for (const row of (JSON.parse(out) as { loopdevices: Record<string, unknown>[] }).loopdevices) {
    rows.set(String(row.name), {
      backFile: String(row['back-file']).replace(/ \(deleted\)$/, ''),
      offset: String(row.offset),
      sizeLimit: String(row.sizelimit),
      autoclear: flag(row.autoclear),
      readOnly: flag(row.ro),
    });
  }
  return rows;
}

/** What losetup should print for a status the library reported. */
function expectedRow(s: LoopStatus): LosetupRow {
  return {
    backFile: s.backingFile,
    offset: String(s.offset),
    sizeLimit: String(s.sizeLimit),
    autoclear: s.autoclear,
    readOnly: s.readOnly,
  };
}

/** True once the loop device has no backing file (LOOP_GET_STATUS64 says ENXIO). */
function detached(lo: LoopDevices, index: number): boolean {
  try {
    lo.status(index);
    return false;
  } catch (error) {
    if (error instanceof DmSystemError && error.code === 'ENXIO') return true;
    throw error;
  }
}

const pattern = (byte: number, size = 512): Buffer => Buffer.alloc(size, byte);

function readAt(path: string, offset: number, size: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(size);
    readSync(fd, buffer, 0, size, offset);
    return buffer;
  } finally {
    closeSync(fd);
  }
}

function writeAt(path: string, offset: number, data: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

for (const ffi of BACKENDS) {
  const loops = (): LoopDevices => new LoopDevices({ ffi });

  test.serial(`${ffi}: findFree, attach, status: sysfs, the data and losetup agree; detach`, (t) => {
    const c = new Cleanup(t);
    const lo = loops();
    const free = lo.findFree();
    t.true(Number.isInteger(free) && free >= 0);
    t.true(existsSync(`/dev/loop${free}`), 'LOOP_CTL_GET_FREE makes the node');
    t.true(detached(lo, free), 'a free device has no backing file');

    const file = sparseFile(c, 'backing', 1 << 20);
    const st = lo.attach(file);
    c.loop(st.index);
    const stat = statSync(file, { bigint: true });
    t.like(st, {
      path: `/dev/loop${st.index}`,
      backingFile: file,
      offset: 0n,
      sizeLimit: 0n,
      readOnly: false,
      autoclear: false,
      directIo: false,
    });
    t.is(st.backingDevice, stat.dev);
    t.is(st.backingInode, stat.ino);
    t.deepEqual(lo.status(st.index), st);
    t.deepEqual(lo.status(st.path), st);

    const disk = `loop${st.index}`;
    t.is(sysBlock(disk, 'size'), '2048');
    t.is(sysBlock(disk, 'loop/backing_file'), file);
    t.is(sysBlock(disk, 'loop/offset'), '0');
    t.is(sysBlock(disk, 'loop/sizelimit'), '0');
    t.is(sysBlock(disk, 'loop/autoclear'), '0');
    t.is(sysBlock(disk, 'ro'), '0');
    t.deepEqual(losetup().get(st.path), expectedRow(st));

    // Data written through the device lands in the file.
    writeAt(st.path, 8192, pattern(0xa5));
    t.deepEqual(readAt(file, 8192, 512), pattern(0xa5));

    t.is(lo.findByBackingFile(file)?.index, st.index);
    t.is(lo.findByBackingFile(sparseFile(c, 'unattached', 4096)), undefined);

    lo.detach(st.index);
    t.true(detached(lo, st.index));
    t.false(losetup().has(st.path));
    t.is(lo.findByBackingFile(file), undefined);
    const again = t.throws(() => lo.detach(st.path), { instanceOf: DmSystemError, code: 'ENXIO' });
    t.like(again, { syscall: 'ioctl', operation: 'LOOP_CLR_FD', device: st.path });
  });

  test.serial(`${ffi}: offset and sizeLimit are honoured by the device`, (t) => {
    const c = new Cleanup(t);
    const lo = loops();
    const file = sparseFile(c, 'backing', 1 << 20);
    writeAt(file, 4096, pattern(0x5a));
    writeAt(file, 4096 + 65536, pattern(0x77)); // just past the limit
    const st = lo.attach(file, { offset: 4096n, sizeLimit: 65536n });
    c.loop(st.index);
    t.like(st, { offset: 4096n, sizeLimit: 65536n });
    const disk = `loop${st.index}`;
    t.is(sysBlock(disk, 'size'), String(65536 / 512));
    t.is(sysBlock(disk, 'loop/offset'), '4096');
    t.is(sysBlock(disk, 'loop/sizelimit'), '65536');
    t.deepEqual(readAt(st.path, 0, 512), pattern(0x5a), 'sector 0 of the device is byte 4096 of the file');
    t.deepEqual(losetup().get(st.path), expectedRow(st));
    t.deepEqual(losetup().get(st.path), {
      backFile: file,
      offset: '4096',
      sizeLimit: '65536',
      autoclear: false,
      readOnly: false,
    });
  });

  test.serial(`${ffi}: a read-only attach refuses writes`, (t) => {
    const c = new Cleanup(t);
    const lo = loops();
    const file = sparseFile(c, 'backing', 1 << 20);
    writeAt(file, 0, pattern(0x11));
    const st = lo.attach(file, { readOnly: true });
    c.loop(st.index);
    t.true(st.readOnly);
    t.is(sysBlock(`loop${st.index}`, 'ro'), '1');
    t.true(losetup().get(st.path)?.readOnly);
    t.deepEqual(readAt(st.path, 0, 512), pattern(0x11));
    const error = t.throws(() => {
      const fd = c.fd(openSync(st.path, 'r+'));
      writeSync(fd, pattern(0x22), 0, 512, 0);
      fsyncSync(fd);
    });
    t.true(['EPERM', 'EROFS', 'EACCES'].includes((error as NodeJS.ErrnoException).code ?? ''), String(error));
    t.deepEqual(readFileSync(file).subarray(0, 512), pattern(0x11), 'the file is unchanged');
  });

  test.serial(
    `${ffi}: setAutoclear turns the flag on and off; with it on the device detaches at the last close`,
    async (t) => {
      const c = new Cleanup(t);
      const lo = loops();
      const file = sparseFile(c, 'backing', 1 << 20);
      const st = lo.attach(file);
      c.loop(st.index);
      t.false(st.autoclear);
      // Held open: with autoclear on, setAutoclear's own close must not be the last one.
      const fd = c.fd(openSync(st.path, 'r'));
      const on = lo.setAutoclear(st.index, true);
      t.true(on.autoclear);
      t.like(on, { backingFile: file, offset: 0n, sizeLimit: 0n, readOnly: false }, 'the other fields are kept');
      t.is(sysBlock(`loop${st.index}`, 'loop/autoclear'), '1');
      t.true(losetup().get(st.path)?.autoclear);
      const off = lo.setAutoclear(st.path, false);
      t.false(off.autoclear);
      t.is(sysBlock(`loop${st.index}`, 'loop/autoclear'), '0');
      t.false(losetup().get(st.path)?.autoclear);

      lo.setAutoclear(st.index, true);
      t.false(detached(lo, st.index), 'still held');
      c.closeFd(fd);
      t.true(await waitFor(() => detached(lo, st.index)), 'detached at the last close');
      t.false(losetup().has(st.path));

      // With autoclear turned off again, closing leaves it attached.
      const kept = lo.attach(file);
      c.loop(kept.index);
      const held = c.fd(openSync(kept.path, 'r'));
      lo.setAutoclear(kept.index, true);
      lo.setAutoclear(kept.index, false);
      c.closeFd(held);
      t.false(detached(lo, kept.index));
      lo.detach(kept.index);
      t.true(detached(lo, kept.index));
    },
  );

  test.serial(`${ffi}: attachAndHold with autoclear: attached while held, detached after release`, async (t) => {
    const c = new Cleanup(t);
    const lo = loops();
    const file = sparseFile(c, 'backing', 1 << 20);
    const { status, fd } = lo.attachAndHold(file, { autoclear: true });
    c.fd(fd);
    c.loop(status.index);
    t.true(status.autoclear);
    t.true(Number.isInteger(fd) && fd >= 0);
    t.deepEqual(lo.status(status.index), status, 'a status call (open + close) does not detach it');
    t.true(losetup().get(status.path)?.autoclear);
    t.is(sysBlock(`loop${status.index}`, 'loop/autoclear'), '1');
    lo.release(fd);
    c.forgetFd(fd);
    t.true(await waitFor(() => detached(lo, status.index)));
    t.false(losetup().has(status.path));

    // Without autoclear, release leaves it attached.
    const plain = lo.attachAndHold(file);
    c.fd(plain.fd);
    c.loop(plain.status.index);
    lo.release(plain.fd);
    c.forgetFd(plain.fd);
    t.false(detached(lo, plain.status.index));
  });

  test.serial(`${ffi}: refreshCapacity picks up a grown backing file`, (t) => {
    const c = new Cleanup(t);
    const lo = loops();
    const file = sparseFile(c, 'backing', 1 << 20);
    const st = lo.attach(file);
    c.loop(st.index);
    const disk = `loop${st.index}`;
    t.is(sysBlock(disk, 'size'), '2048');
    truncateSync(file, 3 << 20);
    t.is(sysBlock(disk, 'size'), '2048', 'the device keeps its size until told');
    lo.refreshCapacity(st.index);
    t.is(sysBlock(disk, 'size'), String((3 << 20) / 512));
    t.deepEqual(lo.status(st.index), st, 'nothing else changed');
    writeAt(st.path, (3 << 20) - 512, pattern(0x3c));
    t.deepEqual(readAt(file, (3 << 20) - 512, 512), pattern(0x3c), 'the new end is usable');
    lo.detach(st.index);
    t.throws(() => lo.refreshCapacity(st.index), { instanceOf: DmSystemError, code: 'ENXIO' });
  });

  test.serial(`${ffi}: list and findByBackingFile see every attached device, as losetup does`, (t) => {
    const c = new Cleanup(t);
    const lo = loops();
    const a = sparseFile(c, 'a', 1 << 20);
    const b = sparseFile(c, 'b', 2 << 20);
    const attached = [lo.attach(a), lo.attach(b, { offset: 512n }), lo.attach(a, { readOnly: true })];
    for (const s of attached) c.loop(s.index);
    const listed = lo.list().filter((s) => s.backingFile.includes(PREFIX));
    t.deepEqual(
      listed.map((s) => s.index).sort((x, y) => x - y),
      attached.map((s) => s.index).sort((x, y) => x - y),
    );
    for (const s of attached)
      t.deepEqual(
        listed.find((l) => l.index === s.index),
        s,
      );
    const reference = losetup();
    for (const s of attached) t.deepEqual(reference.get(s.path), expectedRow(s), s.path);
    t.true([attached[0]!.index, attached[2]!.index].includes(lo.findByBackingFile(a)!.index));
    t.is(lo.findByBackingFile(b)?.index, attached[1]!.index);
  });

  test.serial(
    `${ffi}: errors: a missing file is ENOENT from open, a free device ENXIO from the ioctl, bad paths InvalidArgumentError`,
    (t) => {
      const c = new Cleanup(t);
      const lo = loops();
      const before = losetup();
      const missing = `${sparseFile(c, 'x', 0)}-missing`;
      const enoent = t.throws(() => lo.attach(missing), { instanceOf: DmSystemError, code: 'ENOENT' });
      t.like(enoent, { errno: 2, syscall: 'open', device: missing });
      t.true(enoent!.message.includes(missing));
      const free = lo.findFree();
      const enxio = t.throws(() => lo.status(free), { instanceOf: DmSystemError, code: 'ENXIO' });
      t.like(enxio, { errno: 6, syscall: 'ioctl', operation: 'LOOP_GET_STATUS64', device: `/dev/loop${free}` });
      t.throws(() => lo.detach(free), { instanceOf: DmSystemError, code: 'ENXIO' });
      t.throws(() => lo.setAutoclear(free, true), { instanceOf: DmSystemError, code: 'ENXIO' });
      for (const device of ['/dev/sda', 'loop0', '/dev/loop', -1, 1.5]) {
        t.is(
          t.throws(() => lo.status(device), { instanceOf: InvalidArgumentError })?.argument,
          'device',
          String(device),
        );
        t.is(
          t.throws(() => lo.detach(device), { instanceOf: InvalidArgumentError })?.argument,
          'device',
          String(device),
        );
      }
      for (const file of ['', 'a\0b'])
        t.is(t.throws(() => lo.attach(file), { instanceOf: InvalidArgumentError })?.argument, 'file');
      t.deepEqual(losetup(), before, 'nothing was attached');
      t.throws(() => new LoopDevices({ ffi: 'nope' as FfiBackendName }), { instanceOf: InvalidArgumentError });
    },
  );

  test.serial(`${ffi}: no fd leak across LoopDevices operations`, (t) => {
    const c = new Cleanup(t);
    const lo = loops();
    const file = sparseFile(c, 'backing', 1 << 20);
    const cycle = (): void => {
      const st = lo.attach(file, { offset: 512n });
      c.loop(st.index);
      lo.status(st.index);
      lo.setAutoclear(st.index, false);
      lo.refreshCapacity(st.index);
      lo.findByBackingFile(file);
      lo.list();
      const held = lo.attachAndHold(file);
      c.loop(held.status.index);
      lo.release(held.fd);
      lo.detach(held.status.index);
      lo.detach(st.index);
      t.throws(() => lo.attach(`${file}-missing`), { code: 'ENOENT' });
      t.throws(() => lo.status(st.index), { code: 'ENXIO' });
    };
    cycle();
    const before = fdCount();
    for (let i = 0; i < 20; i++) cycle();
    t.is(fdCount(), before);
  });
}

test.serial('nothing is left behind: losetup lists no loop device', (t) => {
  t.is(run('losetup', ['--list', '--noheadings']).trim(), '');
  t.deepEqual(new LoopDevices().list(), []);
});
