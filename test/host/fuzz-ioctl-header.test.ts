// Property-based fuzzing of device names and the dm_ioctl header: validateDeviceName,
// writeDmIoctlHeader, writeDeviceRef (the engine's hot path, checked against the header writer
// byte for byte) and readDeviceInfo. Names and field values of any type must give a value or
// InvalidArgumentError, never a TypeError / RangeError, within the harness's budget
// (helpers/fuzz-harness.ts); a refused header writes nothing, an accepted one reads back.
//
// FUZZ_SCALE=<factor> multiplies every property's run count (e.g. 10 for a long soak).
import test from 'ava';
import fc from 'fast-check';
import { deepStrictEqual, ok as assertOk, strictEqual } from 'node:assert/strict';
import { InvalidArgumentError } from '../../src/errors.js';
import { DM_IOCTL_SIZE, decodeDev } from '../../src/ioctl/abi.js';
import type { DeviceRef } from '../../src/ioctl/dm-types.js';
import {
  readDeviceInfo,
  readDmIoctlHeader,
  validateDeviceName,
  viewOf,
  writeDeviceRef,
  writeDmIoctlHeader,
} from '../../src/ioctl/codec.js';
import { anyValue, attempt, check, runs, show, U32_MAX, U64_MAX, u32, u64 } from './helpers/fuzz-harness.js';

// ---------------------------------------------------------------------------------------------
// Device names and the dm_ioctl header
// ---------------------------------------------------------------------------------------------

const deviceNameArb = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 140 }),
  fc.string({ unit: 'grapheme', maxLength: 50 }),
  fc.string({
    unit: fc.constantFrom('a', '/', '.', '\0', 'é', '€', '😀', '\ud800', '\udc00', ' ', '\n'),
    maxLength: 130,
  }),
  fc.integer({ min: 120, max: 135 }).map((n) => 'y'.repeat(n)),
  fc.integer({ min: 60, max: 66 }).map((n) => 'é'.repeat(n)),
  fc.constantFrom('', '.', '..', 'control', 'a/b', 'a\0', 'pool', 'docker-253:0-1-pool', '...'),
);

function nameAcceptable(name: unknown): boolean {
  if (typeof name !== 'string') return false;
  const bytes = Buffer.byteLength(name, 'utf8');
  return (
    bytes >= 1 &&
    bytes < 128 &&
    !name.includes('/') &&
    !name.includes('\0') &&
    !['.', '..', 'control'].includes(name) &&
    wellFormed(name)
  );
}

/** String.prototype.isWellFormed (Node 20; not in the ES2022 lib typings): no lone surrogate. */
const wellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

test('validateDeviceName and writeDmIoctlHeader accept exactly the names dm can hold', (t) => {
  check(
    t,
    fc.tuple(
      fc.oneof({ weight: 8, arbitrary: deviceNameArb as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: anyValue }),
      fc.integer({ min: 0, max: 64 }),
    ),
    runs(4000),
    ([name, extra]) => {
      const out = attempt(() => validateDeviceName(name as string), [InvalidArgumentError]);
      strictEqual(out.ok, nameAcceptable(name), `validateDeviceName(${show(name)})`);
      if (out.ok) {
        const s = name as string;
        strictEqual(out.value, Buffer.byteLength(s, 'utf8'));
        assertOk(out.value < 128 && !s.includes('/') && !s.includes('\0'));
      }
      const size = DM_IOCTL_SIZE + 8 + extra;
      const buf = Buffer.alloc(size, 0x5a);
      const written = attempt(
        () =>
          writeDmIoctlHeader(buf, {
            version: [4, 0, 0],
            dataSize: size,
            dataStart: DM_IOCTL_SIZE,
            name: name as string,
          }),
        [InvalidArgumentError],
      );
      // An absent name (undefined, null or '') is written as no name.
      strictEqual(
        written.ok,
        name === undefined || name === null || name === '' || nameAcceptable(name),
        `writeDmIoctlHeader name ${show(name)}`,
      );
      if (written.ok) {
        strictEqual(
          readDmIoctlHeader(buf).name,
          Buffer.from((name as string | null | undefined) ?? '', 'utf8').toString('utf8'),
        );
        assertOk(
          buf.subarray(DM_IOCTL_SIZE).every((b) => b === 0x5a),
          'nothing past the header is written',
        );
      } else {
        assertOk(
          buf.every((b) => b === 0x5a),
          'nothing is written when the header is refused',
        );
      }
    },
  );
});

test('writeDeviceRef (the engine hot path) accepts exactly the names and uuids writeDmIoctlHeader does, with the same bytes', (t) => {
  const refArb = fc.oneof(
    { weight: 6, arbitrary: deviceNameArb as fc.Arbitrary<unknown> },
    { weight: 2, arbitrary: deviceNameArb.map((name) => ({ name })) as fc.Arbitrary<unknown> },
    { weight: 2, arbitrary: fc.oneof(deviceNameArb, fc.string({ maxLength: 140 })).map((uuid) => ({ uuid })) },
    { weight: 1, arbitrary: anyValue },
    // Objects of the right keys with the wrong types (found by this property once: { name: null }).
    { weight: 1, arbitrary: fc.constantFrom<unknown>({ name: null }, { uuid: null }, { name: 5, uuid: 'u-1' }, {}) },
  );
  check(t, refArb, runs(4000), (device) => {
    if (device === undefined) return; // no device: the commands that take none
    const fast = Buffer.alloc(DM_IOCTL_SIZE, 0x5a);
    const label = attempt(() => writeDeviceRef(fast, device as DeviceRef, ''), [InvalidArgumentError]);
    // A DeviceRef is a name, { name: string } or { uuid: string }; anything else (a { name: null }
    // included) names no device and must be refused.
    const field = (key: 'name' | 'uuid'): string | undefined => {
      const value =
        typeof device === 'object' && device !== null ? (device as Record<string, unknown>)[key] : undefined;
      return typeof value === 'string' ? value : undefined;
    };
    const name = typeof device === 'string' ? device : field('name');
    const uuid = name === undefined ? field('uuid') : undefined;
    const reference = Buffer.alloc(DM_IOCTL_SIZE, 0x5a);
    const checked = attempt(() => {
      if (name === undefined && uuid === undefined) throw new InvalidArgumentError('device', 'neither');
      if (name === '' || uuid === '') throw new InvalidArgumentError('device', 'empty');
      writeDmIoctlHeader(reference, {
        version: [4, 0, 0],
        dataSize: DM_IOCTL_SIZE,
        dataStart: DM_IOCTL_SIZE,
        name: name as string,
        uuid: uuid as string,
      });
    }, [InvalidArgumentError]);
    strictEqual(label.ok, checked.ok, `writeDeviceRef(${show(device)})`);
    if (label.ok) {
      strictEqual(label.value, name ?? uuid);
      const got = readDmIoctlHeader(Buffer.concat([Buffer.alloc(48), fast.subarray(48, 305), Buffer.alloc(7)]));
      const want = readDmIoctlHeader(reference);
      strictEqual(got.name, want.name);
      strictEqual(got.uuid, want.uuid);
    }
  });
});

test('devFromWords and readDeviceInfo agree with decodeDev and readDmIoctlHeader', (t) => {
  check(
    t,
    fc.tuple(fc.bigInt({ min: 0n, max: U64_MAX }), u32, u32, fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })),
    runs(3000),
    ([dev, flags, eventNr, openCount]) => {
      const buf = Buffer.alloc(DM_IOCTL_SIZE);
      writeDmIoctlHeader(buf, {
        version: [4, 47, 0],
        dataSize: DM_IOCTL_SIZE,
        dataStart: DM_IOCTL_SIZE,
        dev,
        flags,
        eventNr,
        openCount,
        name: 'n',
        uuid: 'u',
      });
      const h = readDmIoctlHeader(buf);
      const info = readDeviceInfo(buf, viewOf(buf), undefined);
      deepStrictEqual(info.dev, decodeDev(dev));
      deepStrictEqual(
        [info.name, info.uuid, info.eventNr, info.openCount, info.targetCount],
        [h.name, h.uuid, h.eventNr, h.openCount, h.targetCount],
      );
      strictEqual(info.suspended, (flags & 2) !== 0);
      strictEqual(readDeviceInfo(buf, viewOf(buf), 'known').name, 'known');
    },
  );
});

test('writeDmIoctlHeader: random field values give a header or InvalidArgumentError', (t) => {
  // Primitive values only: error messages print them with String().
  const prim = fc.oneof(
    fc.integer(),
    fc.double(),
    fc.bigInt(),
    fc.boolean(),
    fc.constantFrom(null, undefined),
    fc.string({ maxLength: 8 }),
  );
  const validHeader = fc.integer({ min: DM_IOCTL_SIZE, max: 700 }).chain((bufLen) =>
    fc.integer({ min: DM_IOCTL_SIZE, max: bufLen }).chain((dataSize) =>
      fc.record({
        bufLen: fc.constant(bufLen),
        version: fc.tuple(u32, u32, u32),
        dataSize: fc.constant(dataSize),
        dataStart: fc
          .integer({ min: 0, max: Math.floor((dataSize - DM_IOCTL_SIZE) / 8) })
          .map((k) => DM_IOCTL_SIZE + 8 * k),
        targetCount: u32,
        openCount: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        flags: u32,
        eventNr: u32,
        dev: u64,
        name: deviceNameArb,
        uuid: fc.oneof(
          fc.string({ unit: 'binary', maxLength: 140 }),
          fc.integer({ min: 125, max: 131 }).map((n) => 'u'.repeat(n)),
        ),
      }),
    ),
  );
  const FIELDS = [
    'bufLen',
    'version',
    'dataSize',
    'dataStart',
    'targetCount',
    'openCount',
    'flags',
    'eventNr',
    'dev',
    'name',
    'uuid',
  ] as const;
  const wild = fc.oneof(
    prim,
    fc.integer({ min: -1, max: 800 }),
    fc.constantFrom(-1, 2 ** 31, -(2 ** 31) - 1, U32_MAX + 1, 1.5, NaN, -0, 313, 316, 2n ** 64n, -1n),
    fc.array(prim, { maxLength: 4 }),
    fc.tuple(
      fc.integer({ min: -1, max: U32_MAX + 1 }),
      fc.integer({ min: -1, max: U32_MAX + 1 }),
      fc.integer({ min: -1, max: U32_MAX + 1 }),
    ),
  );
  const arb = fc
    .tuple(validHeader, fc.array(fc.tuple(fc.constantFrom(...FIELDS), wild), { maxLength: 2 }))
    .map(([h, perturb]) => {
      const header: Record<string, unknown> = { ...h };
      for (const [k, v] of perturb)
        header[k] = k === 'bufLen' ? Math.max(0, Math.min(800, Math.trunc(Number(v) || 0))) : v;
      return header as typeof h;
    });
  let accepted = 0;
  check(t, arb, runs(3000), ({ bufLen, ...header }) => {
    const buf = Buffer.alloc(bufLen, 0x5a);
    const out = attempt(() => writeDmIoctlHeader(buf, header as never), [InvalidArgumentError]);
    if (!out.ok) {
      assertOk(
        buf.every((b) => b === 0x5a),
        'nothing is written when the header is refused',
      );
      return;
    }
    accepted++;
    const h = readDmIoctlHeader(buf);
    const plus0 = (v: unknown) => (v as number) + 0; // -0 is accepted and reads back as 0
    deepStrictEqual(h.version, (header.version as number[]).map(plus0));
    strictEqual(h.dataSize, plus0(header.dataSize));
    strictEqual(h.dataStart, plus0(header.dataStart));
    strictEqual(h.targetCount, plus0(header.targetCount ?? 0));
    strictEqual(h.openCount, plus0(header.openCount ?? 0));
    strictEqual(h.flags, plus0(header.flags ?? 0));
    strictEqual(h.eventNr, plus0(header.eventNr ?? 0));
    strictEqual(h.dev, header.dev ?? 0n);
    strictEqual(h.name, Buffer.from(header.name ?? '', 'utf8').toString('utf8'));
    strictEqual(h.uuid, Buffer.from(header.uuid ?? '', 'utf8').toString('utf8'));
    assertOk(
      buf.subarray(DM_IOCTL_SIZE).every((b) => b === 0x5a),
      'nothing past the header is written',
    );
  });
  t.log(`${accepted} accepted`);
  t.true(accepted > 0);
});
