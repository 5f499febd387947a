// Property-based fuzzing of the decoders of the other ioctl payloads: dm_target_spec
// (DM_TABLE_STATUS: decodeTargetSpecs), dm_target_deps (DM_TABLE_DEPS: decodeTargetDeps), the
// string payload (DM_TARGET_MSG output: decodeStringPayload) and loop_info64 (LOOP_GET_STATUS64:
// decodeLoopInfo64). Valid payloads built from the layouts in src/ioctl/abi.ts must round-trip;
// random and mutated ones must give a value or ParseError, never a TypeError / RangeError,
// within the harness's budget. Harness and payload generators: helpers/fuzz-harness.ts,
// helpers/fuzz-payloads.ts.
//
// FUZZ_SCALE=<factor> multiplies every property's run count (e.g. 10 for a long soak).
import test from 'ava';
import fc from 'fast-check';
import { deepStrictEqual, ok as assertOk, strictEqual } from 'node:assert/strict';
import { ParseError } from '../../src/errors.js';
import {
  decodeLoopInfo64,
  decodeStringPayload,
  decodeTargetDeps,
  decodeTargetSpecs,
  encodeLoopInfo64,
  encodeStringPayload,
  encodeTargets,
  targetsSize,
  type LoopInfo64,
  type TargetSpec,
} from '../../src/ioctl/codec.js';
import { attempt, check, inU64, runs, u32, u64, value } from './helpers/fuzz-harness.js';
import {
  byteMutations,
  cBytes,
  mutatePayload,
  offsetIn,
  putBytes,
  type RandomPayload,
  randomPayload,
} from './helpers/fuzz-payloads.js';

// --- dm_target_spec (DM_TABLE_STATUS) ---------------------------------------------------------

const targetTypeArb = fc.oneof(
  fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz-_0123456789'), minLength: 1, maxLength: 15 }),
  fc.constantFrom('thin-pool', 'thin', 'linear', 'error', 'zero', 'striped', 'ü-target', 'x'.repeat(15)),
  fc
    .string({ unit: 'binary', minLength: 1, maxLength: 6 })
    .filter((s) => !s.includes('\0') && Buffer.byteLength(s) <= 15),
);
const specsArb = fc.record({
  records: fc.array(
    fc.record({
      length: fc.bigInt({ min: 1n, max: 1n << 40n }),
      type: targetTypeArb,
      params: cBytes(0, 60),
      status: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      stale: fc.integer({ min: 0, max: 255 }),
    }),
    { minLength: 1, maxLength: 6 },
  ),
  start: fc.integer({ min: 0, max: 6 }).map((k) => k * 8),
  fill: fc.constantFrom(0, 0xaa),
  tailPad: fc.integer({ min: 0, max: 7 }),
});
type SpecsCase = typeof specsArb extends fc.Arbitrary<infer T> ? T : never;

/**
 * A DM_TABLE_STATUS payload: laid out by encodeTargets() (the DM_TABLE_LOAD encoder), then
 * turned into retrieve_status()'s form: raw params bytes, the status word, a stale last byte
 * of the type field (strncpy of 15 leaves it), and `next` counted from the data area.
 */
function buildSpecs(c: SpecsCase): {
  buf: Buffer;
  start: number;
  end: number;
  expected: Array<TargetSpec & { status: number }>;
} {
  let sector = 0n;
  const targets: TargetSpec[] = c.records.map((r) => {
    const spec = { start: sector, length: r.length, type: r.type, params: 'x'.repeat(r.params.length) };
    sector += r.length;
    return spec;
  });
  const size = targetsSize(targets);
  const buf = Buffer.alloc(c.start + size + 16, c.fill);
  strictEqual(encodeTargets(buf, c.start, targets), size);
  let at = c.start;
  let end = c.start;
  c.records.forEach((r) => {
    const recordSize = buf.readUInt32LE(at + 20);
    buf.writeInt32LE(r.status, at + 16);
    buf[at + 39] = r.stale;
    end = putBytes(buf, at + 40, r.params);
    buf.writeUInt32LE(at + recordSize - c.start, at + 20);
    at += recordSize;
  });
  const expected = c.records.map((r, i) => ({ ...targets[i]!, params: r.params.toString('utf8'), status: r.status }));
  // data_size covers the last string's NUL, sometimes a little more.
  return { buf, start: c.start, end: Math.min(buf.length, end + c.tailPad), expected };
}

test('decodeTargetSpecs: valid payloads round-trip, and any count up to theirs decodes a prefix', (t) => {
  check(t, fc.tuple(specsArb, fc.nat()), runs(2000), ([c, k]) => {
    const p = buildSpecs(c);
    const n = p.expected.length;
    deepStrictEqual(
      value(
        attempt(() => decodeTargetSpecs(p.buf, p.start, p.end, n), [ParseError]),
        'decodeTargetSpecs',
      ),
      p.expected,
    );
    const fewer = k % (n + 1);
    deepStrictEqual(
      value(
        attempt(() => decodeTargetSpecs(p.buf, p.start, p.end, fewer), [ParseError]),
        'prefix',
      ),
      p.expected.slice(0, fewer),
    );
    attempt(() => decodeTargetSpecs(p.buf, p.start, p.end, n + 1 + (k % 3)), [ParseError]);
  });
});

test('decodeTargetSpecs: random and mutated payloads with random counts give a value or ParseError', (t) => {
  const arb = fc.oneof(
    randomPayload,
    fc.tuple(specsArb, byteMutations, fc.integer({ min: -1, max: 2 })).map(([c, muts, dc]): RandomPayload => {
      const p = buildSpecs(c);
      return { ...mutatePayload(p, muts), count: Math.max(0, p.expected.length + dc), version: undefined };
    }),
  );
  check(t, arb, runs(4000), (p) => {
    const out = attempt(() => decodeTargetSpecs(p.buf, p.start, p.end, p.count), [ParseError]);
    if (out.ok) {
      strictEqual(out.value.length, p.count);
      for (const s of out.value)
        assertOk(inU64(s.start) && inU64(s.length) && s.type !== '' && Number.isInteger(s.status));
    }
  });
});

// --- dm_target_deps (DM_TABLE_DEPS) -----------------------------------------------------------

const depsArb = fc.record({
  devs: fc.array(u64, { maxLength: 24 }),
  start: fc.integer({ min: 0, max: 40 }),
  padding: u32,
  slack: fc.integer({ min: 0, max: 24 }),
});
type DepsCase = typeof depsArb extends fc.Arbitrary<infer T> ? T : never;

function buildDeps(c: DepsCase): { buf: Buffer; start: number; end: number } {
  const buf = Buffer.alloc(c.start + 8 + c.devs.length * 8 + c.slack, 0xcc);
  buf.writeUInt32LE(c.devs.length, c.start);
  buf.writeUInt32LE(c.padding, c.start + 4);
  for (const [i, d] of c.devs.entries()) buf.writeBigUInt64LE(d, c.start + 8 + i * 8);
  return { buf, start: c.start, end: buf.length };
}

test('decodeTargetDeps: valid payloads round-trip', (t) => {
  check(t, depsArb, runs(2000), (c) => {
    const p = buildDeps(c);
    deepStrictEqual(
      value(
        attempt(() => decodeTargetDeps(p.buf, p.start, p.end), [ParseError]),
        'decodeTargetDeps',
      ),
      c.devs,
    );
  });
});

test('decodeTargetDeps: random and mutated payloads give a value or ParseError', (t) => {
  const arb = fc.oneof(
    randomPayload,
    fc
      .tuple(depsArb, byteMutations)
      .map(([c, muts]): RandomPayload => ({ ...mutatePayload(buildDeps(c), muts), count: 0, version: undefined })),
  );
  check(t, arb, runs(3000), (p) => {
    const out = attempt(() => decodeTargetDeps(p.buf, p.start, p.end), [ParseError]);
    if (out.ok) assertOk(8 + out.value.length * 8 <= p.end - p.start && out.value.every(inU64));
  });
});

// --- string payload (DM_TARGET_MSG output) ----------------------------------------------------

const stringPayloadArb = fc.record({
  text: fc.string({ unit: 'binary', minLength: 1, maxLength: 80 }).filter((s) => !s.includes('\0')),
  start: fc.integer({ min: 0, max: 40 }),
  slack: fc.integer({ min: 0, max: 16 }),
  fill: fc.constantFrom(0, 0x41, 0xff),
});
type StringCase = typeof stringPayloadArb extends fc.Arbitrary<infer T> ? T : never;

function buildString(c: StringCase): { buf: Buffer; start: number; end: number } {
  const buf = Buffer.alloc(c.start + Buffer.byteLength(c.text) + 1 + c.slack, c.fill);
  const written = encodeStringPayload(buf, c.start, c.text);
  return { buf, start: c.start, end: c.start + written + c.slack };
}

test('decodeStringPayload: valid payloads round-trip', (t) => {
  check(t, stringPayloadArb, runs(2000), (c) => {
    const p = buildString(c);
    strictEqual(
      value(
        attempt(() => decodeStringPayload(p.buf, p.start, p.end), [ParseError]),
        'decodeStringPayload',
      ),
      c.text,
    );
    strictEqual(decodeStringPayload(p.buf, p.start, p.start), '');
  });
});

test('decodeStringPayload: random and mutated payloads give a value or ParseError', (t) => {
  const arb = fc.oneof(
    randomPayload,
    fc
      .tuple(stringPayloadArb, byteMutations)
      .map(([c, muts]): RandomPayload => ({ ...mutatePayload(buildString(c), muts), count: 0, version: undefined })),
  );
  check(t, arb, runs(3000), (p) => {
    const out = attempt(() => decodeStringPayload(p.buf, p.start, p.end), [ParseError]);
    if (out.ok) assertOk(Buffer.byteLength(out.value) <= 3 * (p.end - p.start) && !out.value.includes('\0'));
  });
});

// --- loop_info64 (LOOP_GET_STATUS64) ------------------------------------------------------------

const cString63 = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 63 }).filter((s) => !s.includes('\0') && Buffer.byteLength(s) <= 63),
  fc.string({ unit: fc.constantFrom(...'/abcdefghij.-_0123'), maxLength: 63 }),
);
const loopInfoArb = fc.record({
  info: fc.record({
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizeLimit: u64,
    number: u32,
    encryptType: u32,
    encryptKeySize: fc.integer({ min: 0, max: 32 }),
    flags: u32,
    fileName: cString63,
    cryptName: cString63,
    encryptKey: fc.uint8Array({ maxLength: 32 }),
    init: fc.tuple(u64, u64),
  }),
  offset: fc.integer({ min: 0, max: 64 }),
  extra: fc.integer({ min: 0, max: 16 }),
});

test('decodeLoopInfo64: encoded structs round-trip at any offset', (t) => {
  check(t, loopInfoArb, runs(2000), ({ info, offset, extra }) => {
    const buf = Buffer.alloc(offset + 232 + extra, 0xee);
    strictEqual(encodeLoopInfo64(buf, offset, info), 232);
    const key = new Uint8Array(32);
    key.set(info.encryptKey);
    const expected: LoopInfo64 = { ...info, encryptKey: key };
    deepStrictEqual(
      value(
        attempt(() => decodeLoopInfo64(buf, offset), [ParseError]),
        'decodeLoopInfo64',
      ),
      expected,
    );
  });
});

test('decodeLoopInfo64: random and mutated buffers at random offsets give a value or ParseError', (t) => {
  const randomBig = fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 320 }).map((a) => Buffer.from(a));
  const arb = fc.oneof(
    randomBig.chain((buf) => fc.record({ buf: fc.constant(buf), offset: offsetIn(buf.length) })),
    fc.tuple(loopInfoArb, byteMutations, fc.integer({ min: -8, max: 8 })).map(([c, muts, shift]) => {
      const buf = Buffer.alloc(c.offset + 232 + c.extra);
      encodeLoopInfo64(buf, c.offset, c.info);
      return { buf: mutatePayload({ buf, start: c.offset, end: c.offset + 232 }, muts).buf, offset: c.offset + shift };
    }),
  );
  check(t, arb, runs(3000), ({ buf, offset }) => {
    const out = attempt(() => decodeLoopInfo64(buf, offset), [ParseError]);
    if (out.ok) assertOk(out.value.encryptKey.length === 32 && Buffer.byteLength(out.value.fileName) <= 3 * 63);
  });
});
