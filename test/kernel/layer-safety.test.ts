// Hostile layer tars in the test kernel: every escape (a '..' path, an absolute path, a path,
// directory, whiteout or opaque marker through a symlink, a hard link out of the layer or
// through a symlink, a whiteout of '..'), a truncated gzip stream, a stream that is no tar, and a
// tar bomb larger than the pool. Each must fail with its typed error naming the entry, write
// nothing outside the layer, leave no layer, device or mount behind, and keep check() clean.
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { Driver } from '../../src/driver/driver.js';
import { LayerTarError } from '../../src/errors.js';
import { assertKernelTestBed } from './reference-tools.js';
import { assertNothingLeaked, driverDmNames, mountsUnder, newHome, removeHomes } from './driver-helpers.js';
import { hostileTars } from './layer-fixtures.js';

assertKernelTestBed();

let outside: string;

/** Every path under `dir` with a digest of what is there: the picture that must not change. */
function picture(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = statSync(p, { throwIfNoEntry: false });
      out.push(
        `${p} ${st?.isFile() ? createHash('sha256').update(readFileSync(p)).digest('hex') : st?.isDirectory() ? 'dir' : 'other'}`,
      );
      if (st?.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

test.before(() => {
  outside = mkdtempSync(join(tmpdir(), 'outside-'));
  writeFileSync(join(outside, 'target'), 'must stay as it is\n');
  mkdirSync(join(outside, 'sub'));
});

test.after.always(() => {
  rmSync(outside, { recursive: true, force: true });
  removeHomes();
});

test.serial('every hostile tar fails with its typed error and leaves nothing behind', async (t) => {
  const home = newHome('hostile');
  const driver = await Driver.init({ home, baseSize: '64M', loopDataSize: '512M', loopMetadataSize: '16M' });
  try {
    await driver.applyDiff('base', null, Readable.from([Buffer.alloc(1024)])); // an empty tar: a parent to build on
    const before = picture(outside);
    const devices = driverDmNames();
    for (const hostile of await hostileTars(outside)) {
      const error = await t.throwsAsync(
        driver.applyDiff('victim', 'base', Readable.from([hostile.tar])),
        undefined,
        hostile.name,
      );
      t.true(error instanceof LayerTarError, `${hostile.name}: ${error?.constructor.name} ${error?.message}`);
      t.is((error as LayerTarError).code, hostile.code, hostile.name);
      if (hostile.entry !== undefined) t.is((error as LayerTarError).entry, hostile.entry, hostile.name);
      t.false(await driver.exists('victim'), `${hostile.name}: the half-applied layer is gone`);
      t.deepEqual(picture(outside), before, `${hostile.name}: nothing written outside`);
      t.deepEqual(driverDmNames(), devices, `${hostile.name}: no device left`);
      t.deepEqual(mountsUnder(join(home, 'mnt')), [], `${hostile.name}: no mount left`);
    }
    const report = await driver.check();
    t.true(
      report.clean,
      JSON.stringify(report, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)),
    );
  } finally {
    await driver.cleanup();
  }
});

/** A gzip'd tar of one file of `bytes` zeros, made as a stream (the tar itself is never in memory). */
async function tarBomb(bytes: number): Promise<Buffer> {
  const header = Buffer.alloc(512);
  header.write('bomb', 0);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(`${bytes.toString(8).padStart(11, '0')}\0`, 124);
  header.write('00000000000\0', 136);
  header.write('0', 156);
  header.write('ustar\x0000', 257);
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const zeros = Buffer.alloc(1 << 20);
  async function* body(): AsyncGenerator<Buffer> {
    yield header;
    for (let left = bytes; left > 0; left -= zeros.length) yield left >= zeros.length ? zeros : zeros.subarray(0, left);
    yield Buffer.alloc(((512 - (bytes % 512)) % 512) + 1024);
  }
  const chunks: Buffer[] = [];
  for await (const chunk of Readable.from(body()).pipe(createGzip({ level: 1 }))) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

test.serial('a tar bomb larger than the pool fails, the layer is removed, the pool recovers', async (t) => {
  const home = newHome('bomb');
  const driver = await Driver.init({
    home,
    baseSize: '64M',
    loopDataSize: '160M',
    loopMetadataSize: '16M',
    minFreeSpacePercent: 0,
  });
  try {
    const bomb = await tarBomb(400 << 20);
    t.true(bomb.length < 2 << 20, `${bomb.length} compressed bytes`);
    await driver.create('bomb', null, { size: '1G' }); // larger than the pool: the pool runs out first
    const error = await t.throwsAsync(driver.applyDiff('bomb', null, Readable.from([bomb])));
    t.truthy(error, 'the apply failed');
    t.log(`bomb: ${(error as { code?: string }).code}: ${error?.message}`);
    t.false(await driver.exists('bomb'), 'the layer is gone');
    t.deepEqual(mountsUnder(join(home, 'mnt')), []);
    const status = await driver.status();
    t.is(status.poolMode, 'rw', 'space freed: the pool takes writes again');
    const report = await driver.check();
    t.true(
      report.clean,
      JSON.stringify(report, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)),
    );
    await driver.applyDiff('after', null, Readable.from([Buffer.alloc(1024)]));
    t.true(await driver.exists('after'), 'a layer can be applied afterwards');
    await driver.remove('after');
  } finally {
    await driver.cleanup();
  }
  assertNothingLeaked(t);
});
