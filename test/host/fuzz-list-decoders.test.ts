// Property-based fuzzing of the decoders of the dm list ioctls' payloads: dm_name_list
// (DM_LIST_DEVICES: decodeNameList, and decodeDeviceList, which DeviceMapper.list uses) in each
// kernel generation's layout, and dm_target_versions (DM_LIST_VERSIONS: decodeTargetVersions).
// Valid payloads built from the layouts in src/ioctl/abi.ts must round-trip; random and mutated
// ones must give a value or ParseError, never a TypeError / RangeError, within the harness's
// budget. Harness and payload generators: helpers/fuzz-harness.ts, helpers/fuzz-payloads.ts.
//
// FUZZ_SCALE=<factor> multiplies every property's run count (e.g. 10 for a long soak).
import test from 'ava';
import fc from 'fast-check';
import { deepStrictEqual, ok as assertOk, strictEqual } from 'node:assert/strict';
import { ParseError } from '../../src/errors.js';
import { DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID, DM_NAME_LIST_FLAG_HAS_UUID, decodeDev } from '../../src/ioctl/abi.js';
import { decodeDeviceList, decodeNameList, decodeTargetVersions, type NameListEntry } from '../../src/ioctl/codec.js';
import { align8, attempt, check, failure, inU64, runs, u32, value } from './helpers/fuzz-harness.js';
import {
  byteMutations,
  cBytes,
  mutatePayload,
  putBytes,
  type RandomPayload,
  randomPayload,
} from './helpers/fuzz-payloads.js';

// --- dm_name_list (DM_LIST_DEVICES) -----------------------------------------------------------

interface NameRecord {
  dev: bigint;
  name: Buffer;
  eventNr: number;
  flags: 0 | 1 | 2;
  uuid: Buffer;
}
type NameStyle = 'pre437' | '437' | '445';
const nameRecordArb: fc.Arbitrary<NameRecord> = fc.record({
  dev: fc.bigInt({ min: 1n, max: 0xffff_ffffn }),
  name: cBytes(1, 127),
  eventNr: u32,
  flags: fc.constantFrom(0 as const, 1 as const, 2 as const),
  uuid: fc.oneof(
    cBytes(0, 128),
    fc.uuid().map((s) => Buffer.from(`LVM-${s}`)),
  ),
});
const nameListArb = fc.record({
  records: fc.array(nameRecordArb, { minLength: 1, maxLength: 6 }),
  style: fc.constantFrom<NameStyle>('pre437', '437', '445'),
  start: fc.integer({ min: 0, max: 40 }),
  fill: fc.constantFrom(0, 0xff, 0xaa, 0x08),
  slack: fc.integer({ min: 0, max: 16 }),
  versionPick: fc.nat(),
});
type NameListCase = typeof nameListArb extends fc.Arbitrary<infer T> ? T : never;

/** The payload as list_devices() in drivers/md/dm-ioctl.c writes it, in each generation's layout. */
function buildNameList(c: NameListCase): {
  buf: Buffer;
  start: number;
  end: number;
  version: number[] | undefined;
  expected: NameListEntry[];
} {
  const buf = Buffer.alloc(c.start + c.records.length * 512 + c.slack + 64, c.fill);
  let at = c.start;
  let prev = -1;
  const expected: NameListEntry[] = [];
  for (const r of c.records) {
    if (prev >= 0) buf.writeUInt32LE(at - prev, prev + 8);
    buf.writeBigUInt64LE(r.dev, at);
    buf.writeUInt32LE(0, at + 8);
    const nameEnd = putBytes(buf, at + 12, r.name) - at;
    const entry: NameListEntry = { name: r.name.toString('utf8'), dev: r.dev };
    prev = at;
    if (c.style === 'pre437') {
      at += align8(16 + r.name.length + 1); // old kernels stepped past sizeof(struct dm_name_list)
    } else {
      const tail = align8(nameEnd);
      buf.writeUInt32LE(r.eventNr, at + tail);
      entry.eventNr = r.eventNr;
      let recordEnd = tail + 8;
      if (c.style === '445') {
        buf.writeUInt32LE(r.flags, at + tail + 4);
        if (r.flags === DM_NAME_LIST_FLAG_HAS_UUID) {
          recordEnd = putBytes(buf, at + tail + 8, r.uuid) - at;
          entry.uuid = r.uuid.toString('utf8');
        } else if (r.flags === DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID) {
          entry.uuid = '';
        }
      }
      at += align8(recordEnd);
    }
    expected.push(entry);
  }
  const versions: Record<NameStyle, Array<number[] | undefined>> = {
    pre437: [
      [4, 0, 0],
      [4, 36, 7],
    ],
    '437': [
      [4, 37, 0],
      [4, 44, 0],
    ],
    '445': [[4, 45, 0], [4, 47, 0], [4, 60, 1], undefined], // undefined: the decoder guesses the tail
  };
  const choices = versions[c.style];
  return { buf, start: c.start, end: at + c.slack, version: choices[c.versionPick % choices.length], expected };
}

test('decodeNameList: valid payloads of every kernel generation round-trip', (t) => {
  check(t, nameListArb, runs(2000), (c) => {
    const p = buildNameList(c);
    const opts = p.version === undefined ? {} : { interfaceVersion: p.version };
    deepStrictEqual(
      value(
        attempt(() => decodeNameList(p.buf, p.start, p.end, opts), [ParseError]),
        'decodeNameList',
      ),
      p.expected,
    );
  });
});

test('decodeDeviceList (what DeviceMapper.list returns) is decodeNameList with each dev decoded, or the same ParseError', (t) => {
  const arb = fc.oneof(
    nameListArb.map((c) => buildNameList(c)),
    fc.tuple(nameListArb, byteMutations).map(([c, muts]) => {
      const p = buildNameList(c);
      return { ...mutatePayload(p, muts), version: p.version };
    }),
  );
  check(t, arb, runs(3000), (p) => {
    const reference = attempt(
      () => decodeNameList(p.buf, p.start, p.end, p.version === undefined ? {} : { interfaceVersion: p.version }),
      [ParseError],
    );
    const fast = attempt(() => decodeDeviceList(p.buf, p.start, p.end, p.version), [ParseError]);
    strictEqual(fast.ok, reference.ok, 'both decode, or both refuse');
    if (fast.ok && reference.ok)
      deepStrictEqual(
        fast.value,
        reference.value.map((e) => ({ ...e, dev: decodeDev(e.dev) })),
      );
    else
      strictEqual(
        failure(fast, ParseError, 'decodeDeviceList').message,
        failure(reference, ParseError, 'decodeNameList').message,
      );
  });
});

function checkNameList(entries: NameListEntry[], len: number): void {
  assertOk(entries.length <= Math.floor(len / 16) + 1, `${entries.length} entries from ${len} bytes`);
  for (const e of entries) assertOk(typeof e.name === 'string' && inU64(e.dev));
}

test('decodeNameList: random and mutated payloads give a value or ParseError', (t) => {
  const arb = fc.oneof(
    randomPayload,
    fc.tuple(nameListArb, byteMutations).map(([c, muts]): RandomPayload => {
      const p = buildNameList(c);
      return { ...mutatePayload(p, muts), count: 0, version: p.version };
    }),
  );
  check(t, arb, runs(4000), (p) => {
    const opts = p.version === undefined ? {} : { interfaceVersion: p.version };
    const out = attempt(() => decodeNameList(p.buf, p.start, p.end, opts), [ParseError]);
    if (out.ok) checkNameList(out.value, p.end - p.start);
  });
});

// --- dm_target_versions (DM_LIST_VERSIONS) -----------------------------------------------------

const versionsArb = fc.record({
  records: fc.array(fc.record({ name: cBytes(1, 40), version: fc.tuple(u32, u32, u32) }), {
    minLength: 1,
    maxLength: 8,
  }),
  start: fc.integer({ min: 0, max: 40 }),
  fill: fc.constantFrom(0, 0x55, 0xff),
  slack: fc.integer({ min: 0, max: 7 }),
});
type VersionsCase = typeof versionsArb extends fc.Arbitrary<infer T> ? T : never;

/** list_versions() output: next counts from the record, 0 ends; data_size has per-record slack. */
function buildVersions(c: VersionsCase): { buf: Buffer; start: number; end: number } {
  const buf = Buffer.alloc(c.start + c.records.length * 64 + c.slack + 16, c.fill);
  let at = c.start;
  let prev = -1;
  for (const r of c.records) {
    if (prev >= 0) buf.writeUInt32LE(at - prev, prev);
    buf.writeUInt32LE(0, at);
    for (const [i, v] of r.version.entries()) buf.writeUInt32LE(v, at + 4 + i * 4);
    putBytes(buf, at + 16, r.name);
    prev = at;
    at += align8(16 + r.name.length + 1);
  }
  return { buf, start: c.start, end: at + c.slack };
}

test('decodeTargetVersions: valid payloads round-trip', (t) => {
  check(t, versionsArb, runs(2000), (c) => {
    const p = buildVersions(c);
    const expected = c.records.map((r) => ({ name: r.name.toString('utf8'), version: r.version }));
    deepStrictEqual(
      value(
        attempt(() => decodeTargetVersions(p.buf, p.start, p.end), [ParseError]),
        'decodeTargetVersions',
      ),
      expected,
    );
  });
  t.deepEqual(decodeTargetVersions(Buffer.alloc(8), 4, 4), []);
});

test('decodeTargetVersions: random and mutated payloads give a value or ParseError', (t) => {
  const arb = fc.oneof(
    randomPayload,
    fc
      .tuple(versionsArb, byteMutations)
      .map(([c, muts]): RandomPayload => ({ ...mutatePayload(buildVersions(c), muts), count: 0, version: undefined })),
  );
  check(t, arb, runs(4000), (p) => {
    const out = attempt(() => decodeTargetVersions(p.buf, p.start, p.end), [ParseError]);
    if (out.ok) assertOk(out.value.length <= Math.floor((p.end - p.start) / 17) + 1);
  });
});
