// Payload generators for the fuzz properties of the dm ioctl payload decoders: byte strings,
// random buffers and offsets, and byte / word / range mutations of valid payloads.
import fc from 'fast-check';
import { U32_MAX, u32 } from './fuzz-harness.js';

/** Bytes without NUL: the raw names the kernel may hold (dm names are bytes, not UTF-8). */
export const cBytes = (min: number, max: number): fc.Arbitrary<Buffer> =>
  fc.oneof(
    fc
      .string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-_.'), minLength: min, maxLength: max })
      .map((s) => Buffer.from(s)),
    fc
      .string({ unit: 'binary', minLength: min, maxLength: max })
      .map((s) => Buffer.from(s, 'utf8'))
      .filter((b) => b.length >= min && b.length <= max && !b.includes(0)),
    fc.uint8Array({ minLength: min, maxLength: max, min: 1, max: 255 }).map((a) => Buffer.from(a)),
  );

/** A random byte buffer, biased toward the small, 8-aligned values that make plausible offsets. */
const randomBuffer = fc
  .array(
    fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: 0, max: 255 }) },
      { weight: 2, arbitrary: fc.constantFrom(0, 0, 1, 8, 16, 24, 40, 0xff) },
    ),
    { maxLength: 512 },
  )
  .map((a) => Buffer.from(a));

/** An offset into a buffer of `len` bytes: mostly inside, sometimes beyond, sometimes not an integer. */
export const offsetIn = (len: number): fc.Arbitrary<number> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 0, max: len }) },
    { weight: 2, arbitrary: fc.integer({ min: -16, max: len + 64 }) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        NaN,
        Infinity,
        -Infinity,
        1.5,
        -0,
        -1,
        2 ** 32,
        Number.MAX_SAFE_INTEGER,
        Number.MAX_VALUE,
      ),
    },
  );

export interface RandomPayload {
  buf: Buffer;
  start: number;
  end: number;
  count: number;
  version: readonly number[] | undefined;
}
const countArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 12 }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, 1.5, NaN, Infinity, 2 ** 32 - 1, 2 ** 32, 2 ** 31) },
);
const versionArb = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom(
    [4, 0, 0],
    [4, 36, 9],
    [4, 37, 0],
    [4, 44, 0],
    [4, 45, 0],
    [4, 47, 0],
    [4, 50, 1],
    [5, 0, 0],
    [3, 99, 0],
  ),
  fc.array(fc.integer({ min: 0, max: 60 }), { maxLength: 4 }),
);
export const randomPayload: fc.Arbitrary<RandomPayload> = randomBuffer.chain((buf) =>
  fc.record({
    buf: fc.constant(buf),
    start: offsetIn(buf.length),
    end: offsetIn(buf.length),
    count: countArb,
    version: versionArb,
  }),
);

export type ByteMutation =
  | { op: 'byte'; pos: number; value: number }
  | { op: 'u32'; pos: number; value: number }
  | { op: 'range'; start: number; end: number };
export const byteMutations: fc.Arbitrary<ByteMutation[]> = fc.array(
  fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant('byte' as const),
        pos: fc.nat(),
        value: fc.integer({ min: 0, max: 255 }),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant('u32' as const),
        pos: fc.nat(),
        value: fc.oneof(
          fc.constantFrom(0, 1, 7, 8, 9, 12, 13, 16, 17, 24, 40, 41, 48, 0x7fffffff, 0x80000000, U32_MAX),
          u32,
        ),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant('range' as const),
        start: fc.integer({ min: -24, max: 24 }),
        end: fc.integer({ min: -48, max: 48 }),
      }),
    },
  ),
  { minLength: 1, maxLength: 6 },
);

/** Applies mutations to a copy of a payload; byte and word writes land inside [start, end). */
export function mutatePayload(
  p: { buf: Buffer; start: number; end: number },
  muts: readonly ByteMutation[],
): { buf: Buffer; start: number; end: number } {
  const buf = Buffer.from(p.buf);
  let { start, end } = p;
  const span = Math.max(1, p.end - p.start);
  for (const m of muts) {
    if (m.op === 'range') {
      start = Math.max(0, start + m.start);
      end = end + m.end;
      continue;
    }
    const pos = p.start + (m.pos % span);
    if (m.op === 'byte') {
      if (pos < buf.length) buf[pos] = m.value;
    } else {
      const aligned = p.start + (((pos - p.start) >> 2) << 2);
      if (aligned + 4 <= buf.length) buf.writeUInt32LE(m.value, aligned);
    }
  }
  return { buf, start, end };
}

/** A NUL-terminated byte string at `at`; returns the offset after the NUL. */
export function putBytes(buf: Buffer, at: number, bytes: Buffer): number {
  bytes.copy(buf, at);
  buf[at + bytes.length] = 0;
  return at + bytes.length + 1;
}
