// Property-based fuzzing of everything that reads untrusted or caller-supplied input: the
// thin-pool / thin status and table grammars, the binary decoders of dm ioctl payloads, and the
// validators of options, layer ids, mount labels, sizes and device names. Each property feeds
// random and mutated input and requires that every call either returns a value or throws the
// project's typed error (a DevmapperError: ParseError for kernel output, InvalidArgumentError
// for caller input), never a TypeError / RangeError / SyntaxError, and returns within a time
// budget, so a decoder loop that stalls shows up as a failure, not a hung run. Valid inputs,
// generated from each grammar or layout, must round-trip to the values that were put in.
//
// FUZZ_SCALE=<factor> multiplies every property's run count (e.g. 10 for a long soak).
import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { deepStrictEqual, ok as assertOk, strictEqual } from 'node:assert/strict';
import { join, relative, resolve, sep } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DevmapperError, InvalidArgumentError, ParseError } from '../../src/errors.js';
import { assertLayerId, assertMountLabel, resolveOptions, type DriverOptions } from '../../src/driver/options.js';
import {
  DM_IOCTL_SIZE,
  DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID,
  DM_NAME_LIST_FLAG_HAS_UUID,
  decodeDev,
} from '../../src/ioctl/abi.js';
import type { DeviceRef } from '../../src/ioctl/dm-types.js';
import {
  decodeDeviceList,
  decodeLoopInfo64,
  decodeNameList,
  decodeStringPayload,
  decodeTargetDeps,
  decodeTargetSpecs,
  decodeTargetVersions,
  encodeLoopInfo64,
  encodeStringPayload,
  encodeTargets,
  readDeviceInfo,
  readDmIoctlHeader,
  targetsSize,
  validateDeviceName,
  viewOf,
  writeDeviceRef,
  writeDmIoctlHeader,
  type LoopInfo64,
  type NameListEntry,
  type TargetSpec,
} from '../../src/ioctl/codec.js';
import {
  formatPoolTable,
  formatThinTable,
  parsePoolStatus,
  parsePoolTable,
  parseThinStatus,
  parseThinTable,
  type ParsePoolStatusOptions,
  type PoolStatus,
  type PoolTable,
  type PoolTableFeatures,
  type PoolTableInput,
  type ThinStatus,
  type ThinTable,
} from '../../src/thin/status.js';
import { parseSize, type DataBlocks, type Sectors } from '../../src/thin/units.js';

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

const SCALE = Math.max(1, Number(process.env.FUZZ_SCALE ?? '1') || 1);
const runs = (n: number): number => Math.round(n * SCALE);

/**
 * Wall-clock budget of one call: inputs are small, so anything slower is a loop gone wrong. A
 * call over budget is timed again (twice at most) before it counts as a failure, so that a GC
 * pause or a busy machine does not fail the run, while a call that really spins still does.
 */
const BUDGET_MS = 100;
const RETIMES = 2;

type ErrorClass = abstract new (...args: never[]) => Error;
type Outcome<T> = { ok: true; value: T } | { ok: false; error: DevmapperError };

/**
 * Calls `fn` and classifies what happened. Throws (failing the property, so fast-check shrinks
 * the input) when `fn` throws anything but one of the `allowed` typed errors, or takes longer
 * than BUDGET_MS.
 */
function attempt<T>(fn: () => T, allowed: readonly ErrorClass[]): Outcome<T> {
  const started = performance.now();
  let outcome: Outcome<T>;
  try {
    outcome = { ok: true, value: fn() };
  } catch (caught) {
    const e: unknown = caught;
    if (!(e instanceof DevmapperError) || !allowed.some((c) => e instanceof c)) {
      const kind = e instanceof Error ? e.constructor.name : typeof e;
      const message = e instanceof Error ? e.message : String(e);
      throw new Error(`threw ${kind} (expected a value or ${allowed.map((c) => c.name).join(' / ')}): ${message}`, {
        cause: e,
      });
    }
    if (typeof e.code !== 'string' || e.code === '') throw new Error(`${e.name} without a string code`);
    outcome = { ok: false, error: e };
  }
  let ms = performance.now() - started;
  for (let i = 0; i < RETIMES && ms > BUDGET_MS; i++) {
    const again = performance.now();
    try {
      fn();
    } catch {
      // classified above
    }
    ms = performance.now() - again;
  }
  if (ms > BUDGET_MS)
    throw new Error(`call took ${ms.toFixed(1)} ms, over the ${BUDGET_MS} ms budget, ${RETIMES + 1} times`);
  return outcome;
}

function value<T>(outcome: Outcome<T>, what: string): T {
  if (!outcome.ok) throw new Error(`${what}: expected a value, got ${outcome.error.name}: ${outcome.error.message}`);
  return outcome.value;
}

function failure(outcome: Outcome<unknown>, cls: ErrorClass, what: string): DevmapperError {
  if (outcome.ok) throw new Error(`${what}: expected ${cls.name}, got a value ${show(outcome.value)}`);
  const error: DevmapperError = outcome.error;
  if (!(error instanceof cls)) throw new Error(`${what}: expected ${cls.name}, got ${(error as Error).name}`);
  return error;
}

function show(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)) ?? String(v);
  } catch {
    return typeof v;
  }
}

/** Runs one property `numRuns` times and logs how many cases were run. */
function check<T>(t: ExecutionContext, arb: fc.Arbitrary<T>, numRuns: number, predicate: (input: T) => void): number {
  let cases = 0;
  const started = performance.now();
  fc.assert(
    fc.property(arb, (input) => {
      cases++;
      predicate(input);
    }),
    { numRuns, includeErrorInReport: true },
  );
  t.log(`${cases} cases in ${(performance.now() - started).toFixed(0)} ms`);
  t.true(cases >= numRuns);
  return cases;
}

/** Values of every type, hostile ones included (bigint, boxed, null-prototype, sparse...). */
const anyValue = fc.anything({
  withBigInt: true,
  withBoxedValues: true,
  withNullPrototype: true,
  withMap: true,
  withSet: true,
  withTypedArray: true,
  withDate: true,
  withSparseArray: true,
  withObjectString: true,
  maxDepth: 2,
});

/** Mostly `arb`, sometimes a value of any type. */
function mostly<T>(arb: fc.Arbitrary<T>): fc.Arbitrary<unknown> {
  return fc.oneof({ weight: 4, arbitrary: arb as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: anyValue });
}

const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = 0xffff_ffff;
const u64 = fc.bigInt({ min: 0n, max: U64_MAX });
const u32 = fc.integer({ min: 0, max: U32_MAX });
const align8 = (n: number): number => Math.ceil(n / 8) * 8;
const inU64 = (n: unknown): boolean => typeof n === 'bigint' && n >= 0n && n <= U64_MAX;

// ---------------------------------------------------------------------------------------------
// Line mutations (status and table lines)
// ---------------------------------------------------------------------------------------------

type TokenOp =
  | { op: 'drop' | 'dup'; i: number }
  | { op: 'swap'; i: number; j: number }
  | { op: 'replace'; i: number; token: string };
type CharOp =
  | { op: 'char'; pos: number; ch: string }
  | { op: 'insert'; pos: number; junk: string }
  | { op: 'delete'; pos: number; n: number };
interface LineMutation {
  tokenOps: TokenOp[];
  charOps: CharOp[];
}

const beyondU64 = fc.bigInt({ min: U64_MAX + 1n, max: U64_MAX << 70n });
const negative = fc.bigInt({ min: -U64_MAX - 2n, max: -1n });
const numeral = fc.oneof(u64.map(String), beyondU64.map(String), negative.map(String));
const GRAMMAR_TOKENS = [
  'rw',
  'ro',
  'out_of_data_space',
  'ignore_discard',
  'discard_passdown',
  'no_discard_passdown',
  'error_if_no_space',
  'queue_if_no_space',
  'needs_check',
  '-',
  'Fail',
  'Error',
  'skip_block_zeroing',
  'read_only',
  'SKIP_BLOCK_ZEROING',
  'Read_Only',
  '0',
  '1',
  '4',
  '5',
  '128',
  '127',
  '2097152',
  '2097280',
  '16777215',
  '16777216',
  '253:0',
  '/dev/loop0',
];
const nastyToken = fc.oneof(
  numeral,
  fc.tuple(numeral, numeral).map(([a, b]) => `${a}/${b}`),
  fc.constantFrom(
    '18446744073709551616',
    '18446744073709551615',
    '00000000000000000000000000001',
    '-0',
    '+1',
    '0x10',
    '1e3',
    '1.5',
    '--',
    '/',
    '1/',
    '/1',
    '1/2/3',
    '5/3',
    '-/-',
    '',
    '__proto__',
    'constructor',
    'toString',
    'hasOwnProperty',
    'valueOf',
    '١٢٣',
    '１２',
    'NaN',
    'Infinity',
    '\u00a0',
    '\u2028',
    '\ufeff',
    '\0',
    's\u212aip_block_zeroing',
  ),
  fc.constantFrom(...GRAMMAR_TOKENS),
  fc.string({ unit: 'binary', maxLength: 6 }),
  fc.string({ unit: fc.constantFrom('0', '1', '9', '/', '-', ' ', '\t'), maxLength: 30 }),
);
const tokenOp: fc.Arbitrary<TokenOp> = fc.oneof(
  fc.record({ op: fc.constantFrom('drop' as const, 'dup' as const), i: fc.nat(20) }),
  fc.record({ op: fc.constant('swap' as const), i: fc.nat(20), j: fc.nat(20) }),
  fc.record({ op: fc.constant('replace' as const), i: fc.nat(20), token: nastyToken }),
);
const charOp: fc.Arbitrary<CharOp> = fc.oneof(
  fc.record({
    op: fc.constant('char' as const),
    pos: fc.nat(300),
    ch: fc.oneof(
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
      fc.constantFrom(' ', '/', '-', '0', '9', '\0', '\u00a0', '\n', '\ud800'),
    ),
  }),
  fc.record({
    op: fc.constant('insert' as const),
    pos: fc.nat(300),
    junk: fc.oneof(
      fc.string({ unit: 'binary', maxLength: 8 }),
      nastyToken,
      fc.constantFrom(' ', ' - ', '/', '99999999999999999999999'),
    ),
  }),
  fc.record({ op: fc.constant('delete' as const), pos: fc.nat(300), n: fc.integer({ min: 1, max: 6 }) }),
);
const lineMutation: fc.Arbitrary<LineMutation> = fc
  .record({ tokenOps: fc.array(tokenOp, { maxLength: 4 }), charOps: fc.array(charOp, { maxLength: 4 }) })
  .filter((m) => m.tokenOps.length + m.charOps.length > 0);

function mutateTokens(tokens: readonly string[], ops: readonly TokenOp[]): string[] {
  const t = [...tokens];
  for (const o of ops) {
    if (t.length === 0) {
      if (o.op === 'replace') t.push(o.token);
      continue;
    }
    const i = o.i % t.length;
    if (o.op === 'swap') {
      const j = o.j % t.length;
      [t[i], t[j]] = [t[j]!, t[i]!];
    } else if (o.op === 'replace') t[i] = o.token;
    else if (o.op === 'drop') t.splice(i, 1);
    else t.splice(i, 0, t[i]!);
  }
  return t;
}

function mutateChars(line: string, ops: readonly CharOp[]): string {
  let s = line;
  for (const o of ops) {
    const p = o.pos % (s.length + 1);
    if (o.op === 'char') s = s.slice(0, p) + o.ch + s.slice(p + 1);
    else if (o.op === 'insert') s = s.slice(0, p) + o.junk + s.slice(p);
    else s = s.slice(0, p) + s.slice(p + o.n);
  }
  return s;
}

const sepArb = fc.constantFrom(' ', ' ', ' ', '  ', '\t', ' \t ');
const leadArb = fc.constantFrom('', '', ' ', '\t');
const trailArb = fc.constantFrom('', ' ', ' ', '\n', ' \n', '\t ');

function joinLine(tokens: readonly string[], seps: readonly string[], lead: string, trail: string): string {
  return lead + tokens.map((tok, i) => (i === 0 ? tok : (seps[(i - 1) % seps.length] ?? ' ') + tok)).join('') + trail;
}

/** Random lines: arbitrary text, and token soup from the grammars' own vocabulary. */
const randomLine = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: 'binary-ascii', maxLength: 80 }),
  fc.string({ unit: 'grapheme-ascii', maxLength: 80 }),
  fc
    .tuple(fc.array(nastyToken, { maxLength: 11 }), fc.array(sepArb, { minLength: 1, maxLength: 3 }), leadArb, trailArb)
    .map(([tokens, seps, lead, trail]) => joinLine(tokens, seps, lead, trail)),
);

// ---------------------------------------------------------------------------------------------
// thin-pool status
// ---------------------------------------------------------------------------------------------

const usedTotal = u64.chain((total) => fc.bigInt({ min: 0n, max: total }).map((used) => ({ used, total })));
const blockSizeArb = fc.integer({ min: 1, max: 16384 }).map((k) => BigInt(k * 128));

interface PoolLine {
  transactionId: bigint;
  meta: { used: bigint; total: bigint };
  data: { used: bigint; total: bigint };
  held: bigint | null;
  mode: 'rw' | 'ro' | 'out_of_data_space';
  discard: 'discard_passdown' | 'no_discard_passdown' | 'ignore_discard';
  noSpace: 'error_if_no_space' | 'queue_if_no_space';
  fields: 7 | 8 | 9;
  needsCheck: boolean;
  watermark: bigint;
  seps: string[];
  lead: string;
  trail: string;
  blockSize: bigint | undefined;
}

const poolLineArb: fc.Arbitrary<PoolLine> = fc.record({
  transactionId: u64,
  meta: usedTotal,
  data: usedTotal,
  held: fc.option(u64, { nil: null }),
  mode: fc.constantFrom('rw' as const, 'ro' as const, 'out_of_data_space' as const),
  discard: fc.constantFrom('discard_passdown' as const, 'no_discard_passdown' as const, 'ignore_discard' as const),
  noSpace: fc.constantFrom('error_if_no_space' as const, 'queue_if_no_space' as const),
  fields: fc.constantFrom(7 as const, 8 as const, 9 as const),
  needsCheck: fc.boolean(),
  watermark: u64,
  seps: fc.array(sepArb, { minLength: 8, maxLength: 8 }),
  lead: leadArb,
  trail: trailArb,
  blockSize: fc.option(blockSizeArb, { nil: undefined }),
});

function poolTokens(p: PoolLine): string[] {
  const t = [
    String(p.transactionId),
    `${p.meta.used}/${p.meta.total}`,
    `${p.data.used}/${p.data.total}`,
    p.held === null ? '-' : String(p.held),
    p.mode,
    p.discard,
    p.noSpace,
  ];
  if (p.fields >= 8) t.push(p.needsCheck ? 'needs_check' : '-');
  if (p.fields >= 9) t.push(String(p.watermark));
  return t;
}

function poolOpts(p: { blockSize: bigint | undefined }): ParsePoolStatusOptions {
  return p.blockSize === undefined ? {} : { dataBlockSize: p.blockSize as Sectors };
}

/** What parsePoolStatus must return for a generated line, or 'parse-error'. */
function expectedPool(p: PoolLine): PoolStatus | 'parse-error' {
  const bs = p.blockSize;
  // The data device would have more than 2^64 sectors: no kernel prints that.
  if (bs !== undefined && p.data.total * bs > U64_MAX) return 'parse-error';
  const inBytes = (b: bigint) => (bs === undefined ? undefined : b * bs * 512n);
  const m = p.meta;
  const d = p.data;
  return {
    kind: 'ok',
    transactionId: p.transactionId,
    metadata: {
      usedBlocks: m.used,
      totalBlocks: m.total,
      freeBlocks: m.total - m.used,
      usedBytes: m.used * 4096n,
      totalBytes: m.total * 4096n,
      freeBytes: (m.total - m.used) * 4096n,
    },
    data: {
      usedBlocks: d.used,
      totalBlocks: d.total,
      freeBlocks: d.total - d.used,
      blockSize: bs,
      usedBytes: inBytes(d.used),
      totalBytes: inBytes(d.total),
      freeBytes: inBytes(d.total - d.used),
    },
    heldMetadataRoot: p.held,
    mode: p.mode,
    discard: p.discard,
    noSpace: p.noSpace === 'error_if_no_space' ? 'error' : 'queue',
    needsCheck: p.fields >= 8 ? p.needsCheck : undefined,
    metadataLowWatermark: p.fields >= 9 ? p.watermark : undefined,
  } as PoolStatus;
}

/** The canonical line for a parsed status (the test's own printer of the grammar). */
function printPoolStatus(s: PoolStatus): string {
  if (s.kind === 'fail') return 'Fail';
  if (s.kind === 'error') return 'Error';
  const t = [
    String(s.transactionId),
    `${s.metadata.usedBlocks}/${s.metadata.totalBlocks}`,
    `${s.data.usedBlocks}/${s.data.totalBlocks}`,
    s.heldMetadataRoot === null ? '-' : String(s.heldMetadataRoot),
    s.mode,
    s.discard,
    s.noSpace === 'error' ? 'error_if_no_space' : 'queue_if_no_space',
  ];
  if (s.needsCheck !== undefined) t.push(s.needsCheck ? 'needs_check' : '-');
  if (s.metadataLowWatermark !== undefined) t.push(String(s.metadataLowWatermark));
  return `${t.join(' ')} `;
}

/** Whatever parsePoolStatus accepted must be self-consistent and re-parse to itself. */
function checkPoolStatus(s: PoolStatus, opts: ParsePoolStatusOptions): void {
  if (s.kind !== 'ok') {
    assertOk(s.kind === 'fail' || s.kind === 'error');
    return;
  }
  assertOk(inU64(s.transactionId));
  for (const u of [s.metadata, s.data]) {
    assertOk(inU64(u.usedBlocks) && inU64(u.totalBlocks) && u.usedBlocks <= u.totalBlocks);
    strictEqual(u.freeBlocks, u.totalBlocks - u.usedBlocks);
  }
  strictEqual(s.metadata.usedBytes, s.metadata.usedBlocks * 4096n);
  strictEqual(s.metadata.freeBytes, s.metadata.freeBlocks * 4096n);
  if (opts.dataBlockSize === undefined) {
    strictEqual(s.data.totalBytes, undefined);
  } else {
    strictEqual(s.data.totalBytes, s.data.totalBlocks * opts.dataBlockSize * 512n);
    strictEqual(s.data.freeBytes, s.data.freeBlocks * opts.dataBlockSize * 512n);
  }
  assertOk(s.heldMetadataRoot === null || inU64(s.heldMetadataRoot));
  assertOk(['rw', 'ro', 'out_of_data_space'].includes(s.mode));
  assertOk(['discard_passdown', 'no_discard_passdown', 'ignore_discard'].includes(s.discard));
  assertOk(s.noSpace === 'error' || s.noSpace === 'queue');
  assertOk(s.needsCheck === undefined || typeof s.needsCheck === 'boolean');
  assertOk(s.metadataLowWatermark === undefined || (s.needsCheck !== undefined && inU64(s.metadataLowWatermark)));
  deepStrictEqual(parsePoolStatus(printPoolStatus(s), opts), s);
}

test('parsePoolStatus: random lines give a value or ParseError', (t) => {
  check(t, fc.tuple(randomLine, fc.option(blockSizeArb, { nil: undefined })), runs(3000), ([line, blockSize]) => {
    const opts = poolOpts({ blockSize });
    const out = attempt(() => parsePoolStatus(line, opts), [ParseError]);
    if (out.ok) checkPoolStatus(out.value, opts);
  });
});

test('parsePoolStatus: valid lines from the grammar round-trip', (t) => {
  check(t, poolLineArb, runs(3000), (p) => {
    const line = joinLine(poolTokens(p), p.seps, p.lead, p.trail);
    const out = attempt(() => parsePoolStatus(line, poolOpts(p)), [ParseError]);
    const expected = expectedPool(p);
    if (expected === 'parse-error') failure(out, ParseError, line);
    else deepStrictEqual(value(out, line), expected);
  });
  for (const word of ['Fail', 'Error'] as const) {
    for (const line of [word, `${word} `, ` ${word}\n`])
      t.deepEqual(parsePoolStatus(line), { kind: word === 'Fail' ? 'fail' : 'error' });
  }
});

test('parsePoolStatus: mutated valid lines give a value or ParseError', (t) => {
  const arb = fc.tuple(
    fc.oneof(
      { weight: 9, arbitrary: poolLineArb.map(poolTokens) },
      { weight: 1, arbitrary: fc.constantFrom(['Fail'], ['Error']) },
    ),
    lineMutation,
    fc.option(blockSizeArb, { nil: undefined }),
    fc.array(sepArb, { minLength: 1, maxLength: 3 }),
    trailArb,
  );
  check(t, arb, runs(4000), ([tokens, mutation, blockSize, seps, trail]) => {
    const line = mutateChars(joinLine(mutateTokens(tokens, mutation.tokenOps), seps, '', trail), mutation.charOps);
    const opts = poolOpts({ blockSize });
    const out = attempt(() => parsePoolStatus(line, opts), [ParseError]);
    if (out.ok) checkPoolStatus(out.value, opts);
  });
});

// ---------------------------------------------------------------------------------------------
// thin status
// ---------------------------------------------------------------------------------------------

interface ThinLine {
  mapped: bigint;
  highest: bigint | null;
  sep: string;
  lead: string;
  trail: string;
}
const thinLineArb: fc.Arbitrary<ThinLine> = fc.record({
  mapped: u64,
  highest: fc.option(u64, { nil: null }),
  sep: sepArb,
  lead: leadArb,
  trail: trailArb,
});
const thinTokens = (l: ThinLine): string[] => [String(l.mapped), l.highest === null ? '-' : String(l.highest)];

function checkThinStatus(s: ThinStatus): void {
  if (s.kind !== 'ok') {
    assertOk(s.kind === 'fail' || s.kind === 'error' || s.kind === 'unopened');
    return;
  }
  assertOk(inU64(s.mappedSectors));
  assertOk(s.highestMappedSector === null || inU64(s.highestMappedSector));
  deepStrictEqual(parseThinStatus(`${s.mappedSectors} ${s.highestMappedSector ?? '-'} `), s);
}

test('parseThinStatus: random lines give a value or ParseError', (t) => {
  check(t, randomLine, runs(3000), (line) => {
    const out = attempt(() => parseThinStatus(line), [ParseError]);
    if (out.ok) checkThinStatus(out.value);
  });
});

test('parseThinStatus: valid lines round-trip', (t) => {
  check(t, thinLineArb, runs(2000), (l) => {
    const line = joinLine(thinTokens(l), [l.sep], l.lead, l.trail);
    deepStrictEqual(
      value(
        attempt(() => parseThinStatus(line), [ParseError]),
        line,
      ),
      {
        kind: 'ok',
        mappedSectors: l.mapped,
        highestMappedSector: l.highest,
      },
    );
  });
  t.deepEqual(parseThinStatus('Fail '), { kind: 'fail' });
  t.deepEqual(parseThinStatus('Error'), { kind: 'error' });
  t.deepEqual(parseThinStatus('- '), { kind: 'unopened' });
});

test('parseThinStatus: mutated valid lines give a value or ParseError', (t) => {
  const tokens = fc.oneof(
    { weight: 9, arbitrary: thinLineArb.map(thinTokens) },
    { weight: 1, arbitrary: fc.constantFrom(['Fail'], ['Error'], ['-']) },
  );
  check(
    t,
    fc.tuple(tokens, lineMutation, fc.array(sepArb, { minLength: 1, maxLength: 2 }), trailArb),
    runs(3000),
    ([toks, mutation, seps, trail]) => {
      const line = mutateChars(joinLine(mutateTokens(toks, mutation.tokenOps), seps, '', trail), mutation.charOps);
      const out = attempt(() => parseThinStatus(line), [ParseError]);
      if (out.ok) checkThinStatus(out.value);
    },
  );
});

// ---------------------------------------------------------------------------------------------
// thin-pool and thin tables
// ---------------------------------------------------------------------------------------------

const FEATURES: ReadonlyArray<readonly [keyof PoolTableFeatures, string]> = [
  ['skipBlockZeroing', 'skip_block_zeroing'],
  ['ignoreDiscard', 'ignore_discard'],
  ['noDiscardPassdown', 'no_discard_passdown'],
  ['readOnly', 'read_only'],
  ['errorIfNoSpace', 'error_if_no_space'],
];

/** A device argument: major:minor, a path, or any text without whitespace. */
const devArb = fc.oneof(
  fc.tuple(fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 0, max: 1048575 })).map(([a, b]) => `${a}:${b}`),
  fc
    .string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789/_-.:'), minLength: 1, maxLength: 20 })
    .map((s) => `/dev/${s}`),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 10 }).filter((s) => !/\s/.test(s)),
);
const featuresArb = fc.record({
  skipBlockZeroing: fc.boolean(),
  ignoreDiscard: fc.boolean(),
  noDiscardPassdown: fc.boolean(),
  readOnly: fc.boolean(),
  errorIfNoSpace: fc.boolean(),
});
const poolTableArb = fc.record({
  metadataDev: devArb,
  dataDev: devArb,
  dataBlockSize: blockSizeArb,
  lowWaterMark: u64,
  features: featuresArb,
  omitFalse: fc.boolean(),
  order: fc.array(fc.nat(), { minLength: 5, maxLength: 5 }),
  upper: fc.array(fc.boolean(), { minLength: 20, maxLength: 20 }),
  seps: fc.array(sepArb, { minLength: 1, maxLength: 4 }),
  trail: trailArb,
});
type PoolTableCase = typeof poolTableArb extends fc.Arbitrary<infer T> ? T : never;

/** The table line as the kernel echoes it: the feature group always, in any order and case. */
function echoedPoolTable(c: PoolTableCase): string {
  const names = FEATURES.filter(([k]) => c.features[k])
    .map(([, n], i) => ({ n, key: c.order[i] ?? 0 }))
    .sort((a, b) => a.key - b.key)
    .map(({ n }) => [...n].map((ch, i) => (c.upper[i % c.upper.length] ? ch.toUpperCase() : ch)).join(''));
  const tokens = [
    c.metadataDev,
    c.dataDev,
    String(c.dataBlockSize),
    String(c.lowWaterMark),
    String(names.length),
    ...names,
  ];
  return joinLine(tokens, c.seps, '', c.trail);
}

function checkPoolTable(table: PoolTable): void {
  for (const dev of [table.metadataDev, table.dataDev])
    assertOk(typeof dev === 'string' && dev !== '' && !/\s/.test(dev));
  const bs = table.dataBlockSize;
  assertOk(bs >= 128n && bs <= 2097152n && bs % 128n === 0n);
  assertOk(inU64(table.lowWaterMark));
  deepStrictEqual(Object.keys(table.features).sort(), FEATURES.map(([k]) => k).sort());
  const on = FEATURES.filter(([k]) => table.features[k] === true).length;
  const formatted = attempt(() => formatPoolTable(table), [InvalidArgumentError]);
  if (on > 4) {
    failure(formatted, InvalidArgumentError, 'five features');
    return;
  }
  deepStrictEqual(parsePoolTable(value(formatted, 'format of a parsed table')), table);
}

test('formatPoolTable / parsePoolTable round-trip random valid tables', (t) => {
  check(t, poolTableArb, runs(2000), (c) => {
    const on = FEATURES.filter(([k]) => c.features[k]).length;
    const features: Partial<PoolTableFeatures> = c.omitFalse
      ? Object.fromEntries(FEATURES.filter(([k]) => c.features[k]).map(([k]) => [k, true]))
      : c.features;
    const input: PoolTableInput = {
      metadataDev: c.metadataDev,
      dataDev: c.dataDev,
      dataBlockSize: c.dataBlockSize as Sectors,
      lowWaterMark: c.lowWaterMark as DataBlocks,
      features,
    };
    const expected: PoolTable = { ...input, features: { ...c.features } } as PoolTable;
    const formatted = attempt(() => formatPoolTable(input), [InvalidArgumentError]);
    if (on > 4) failure(formatted, InvalidArgumentError, 'five features');
    else deepStrictEqual(parsePoolTable(value(formatted, 'formatPoolTable') + c.trail), expected);
    // The kernel's echo (feature group always present, any order, any case) parses the same.
    const echoed = echoedPoolTable(c);
    const parsed = value(
      attempt(() => parsePoolTable(echoed), [ParseError]),
      echoed,
    );
    deepStrictEqual(parsed, expected);
    if (on <= 4) strictEqual(formatPoolTable(parsed), formatPoolTable(input));
  });
});

test('parsePoolTable: random and mutated lines give a value or ParseError', (t) => {
  const valid = poolTableArb.map((c) => echoedPoolTable(c).trim().split(/\s+/));
  const arb = fc.oneof(
    randomLine,
    fc
      .tuple(valid, lineMutation, fc.array(sepArb, { minLength: 1, maxLength: 2 }), trailArb)
      .map(([tokens, m, seps, trail]) =>
        mutateChars(joinLine(mutateTokens(tokens, m.tokenOps), seps, '', trail), m.charOps),
      ),
  );
  check(t, arb, runs(3000), (line) => {
    const out = attempt(() => parsePoolTable(line), [ParseError]);
    if (out.ok) checkPoolTable(out.value);
  });
});

const featureValue = fc.oneof(
  { weight: 4, arbitrary: fc.boolean() as fc.Arbitrary<unknown> },
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: anyValue },
);
const partialFeaturesArb = fc.record(Object.fromEntries(FEATURES.map(([k]) => [k, featureValue])), {
  requiredKeys: [],
});

test('formatPoolTable: values of any type give a line or InvalidArgumentError', (t) => {
  const arb = fc.record(
    {
      metadataDev: mostly(devArb),
      dataDev: mostly(devArb),
      dataBlockSize: mostly(
        fc.oneof(blockSizeArb, fc.integer({ min: -1, max: 3_000_000 }), fc.bigInt({ min: -1n, max: 1n << 65n })),
      ),
      lowWaterMark: mostly(fc.oneof(u64, fc.integer(), fc.double(), beyondU64)),
      features: mostly(
        fc.oneof(
          partialFeaturesArb,
          featuresArb,
          fc.dictionary(fc.string({ maxLength: 20 }), anyValue, { maxKeys: 3 }),
        ),
      ),
    },
    { requiredKeys: [] },
  );
  check(t, arb, runs(2000), (input) => {
    const out = attempt(() => formatPoolTable(input as unknown as PoolTableInput), [InvalidArgumentError]);
    if (out.ok)
      checkPoolTable(
        value(
          attempt(() => parsePoolTable(out.value), [ParseError]),
          out.value,
        ),
      );
  });
});

const thinTableArb = fc.record({
  poolDev: devArb,
  deviceId: fc.integer({ min: 0, max: (1 << 24) - 1 }),
  externalOriginDev: fc.option(devArb, { nil: undefined }),
  sep: sepArb,
  trail: trailArb,
});

function checkThinTable(table: ThinTable): void {
  assertOk(typeof table.poolDev === 'string' && table.poolDev !== '' && !/\s/.test(table.poolDev));
  assertOk(Number.isInteger(table.deviceId) && table.deviceId >= 0 && table.deviceId <= 0xffffff);
  assertOk(
    table.externalOriginDev === undefined || (table.externalOriginDev !== '' && !/\s/.test(table.externalOriginDev)),
  );
  const formatted = value(
    attempt(() => formatThinTable(table), [InvalidArgumentError]),
    'format of a parsed thin table',
  );
  deepStrictEqual(parseThinTable(formatted), table);
}

test('formatThinTable / parseThinTable round-trip random valid tables', (t) => {
  check(t, thinTableArb, runs(2000), (c) => {
    const table: ThinTable =
      c.externalOriginDev === undefined
        ? { poolDev: c.poolDev, deviceId: c.deviceId }
        : { poolDev: c.poolDev, deviceId: c.deviceId, externalOriginDev: c.externalOriginDev };
    const line = value(
      attempt(() => formatThinTable(table), [InvalidArgumentError]),
      'formatThinTable',
    );
    deepStrictEqual(
      value(
        attempt(() => parseThinTable(line + c.trail), [ParseError]),
        line,
      ),
      table,
    );
    const spaced = joinLine(line.split(' '), [c.sep], '', c.trail);
    deepStrictEqual(parseThinTable(spaced), table);
  });
});

test('parseThinTable: random and mutated lines give a value or ParseError', (t) => {
  const valid = thinTableArb.map((c) => [
    c.poolDev,
    String(c.deviceId),
    ...(c.externalOriginDev === undefined ? [] : [c.externalOriginDev]),
  ]);
  const arb = fc.oneof(
    randomLine,
    fc
      .tuple(valid, lineMutation, fc.array(sepArb, { minLength: 1, maxLength: 2 }), trailArb)
      .map(([tokens, m, seps, trail]) =>
        mutateChars(joinLine(mutateTokens(tokens, m.tokenOps), seps, '', trail), m.charOps),
      ),
  );
  check(t, arb, runs(3000), (line) => {
    const out = attempt(() => parseThinTable(line), [ParseError]);
    if (out.ok) checkThinTable(out.value);
  });
});

test('formatThinTable: values of any type give a line or InvalidArgumentError', (t) => {
  const arb = fc.record(
    {
      poolDev: mostly(devArb),
      deviceId: mostly(
        fc.oneof(fc.integer({ min: -2, max: (1 << 24) + 2 }), fc.double(), fc.bigInt({ min: 0n, max: 1n << 30n })),
      ),
      externalOriginDev: mostly(devArb),
    },
    { requiredKeys: [] },
  );
  check(t, arb, runs(2000), (input) => {
    const out = attempt(() => formatThinTable(input as unknown as ThinTable), [InvalidArgumentError]);
    if (out.ok)
      checkThinTable(
        value(
          attempt(() => parseThinTable(out.value), [ParseError]),
          out.value,
        ),
      );
  });
});

// ---------------------------------------------------------------------------------------------
// Binary decoders: payloads built from the layouts in src/ioctl/abi.ts
// ---------------------------------------------------------------------------------------------

/** Bytes without NUL: the raw names the kernel may hold (dm names are bytes, not UTF-8). */
const cBytes = (min: number, max: number): fc.Arbitrary<Buffer> =>
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
const offsetIn = (len: number): fc.Arbitrary<number> =>
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

interface RandomPayload {
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
const randomPayload: fc.Arbitrary<RandomPayload> = randomBuffer.chain((buf) =>
  fc.record({
    buf: fc.constant(buf),
    start: offsetIn(buf.length),
    end: offsetIn(buf.length),
    count: countArb,
    version: versionArb,
  }),
);

type ByteMutation =
  | { op: 'byte'; pos: number; value: number }
  | { op: 'u32'; pos: number; value: number }
  | { op: 'range'; start: number; end: number };
const byteMutations: fc.Arbitrary<ByteMutation[]> = fc.array(
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
function mutatePayload(
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
function putBytes(buf: Buffer, at: number, bytes: Buffer): number {
  bytes.copy(buf, at);
  buf[at + bytes.length] = 0;
  return at + bytes.length + 1;
}

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

// ---------------------------------------------------------------------------------------------
// Driver options, layer ids, mount labels
// ---------------------------------------------------------------------------------------------

const sizeString = fc.oneof(
  fc.constantFrom(
    '64k',
    '128k',
    '192k',
    '1M',
    '16M',
    '10G',
    '100GiB',
    '2G',
    '1.5G',
    '512',
    '0',
    '64K',
    '3k',
    '1e3',
    '-1G',
    '0x10',
    ' 10 G ',
    '1GB',
    '65536',
    '2m',
  ),
  fc
    .tuple(
      fc.integer({ min: 0, max: 4096 }),
      fc.constantFrom('', 'b', 'k', 'K', 'm', 'M', 'g', 'G', 'KiB', 'MB', 'gib', 'T', 'x'),
    )
    .map(([n, s]) => `${n}${s}`),
);
const sizeValue = fc.oneof(
  sizeString,
  fc.bigInt({ min: -1n, max: 1n << 42n }),
  fc.integer(),
  fc.double(),
  fc.constantFrom(65536, 65536n, 1 << 30, 2 ** 60),
);
const optionsArb = fc
  .tuple(
    fc.record(
      {
        home: mostly(
          fc.oneof(
            fc.constantFrom('/var/lib/dm', '/', '///', '/a/b/', 'relative', '', '/x\0y', '/x\ny', '/tmp/dm home'),
            fc.string({ maxLength: 20 }).map((s) => `/${s}`),
          ),
        ),
        baseSize: mostly(sizeValue),
        loopDataSize: mostly(sizeValue),
        loopMetadataSize: mostly(sizeValue),
        blockSize: mostly(sizeValue),
        filesystem: mostly(fc.constantFrom('ext4', 'xfs', 'btrfs', 'EXT4', '')),
        mkfsArgs: mostly(fc.array(fc.oneof(fc.string({ maxLength: 8 }), fc.constant('a\0b')), { maxLength: 3 })),
        mountOptions: mostly(
          fc.oneof(
            fc.constantFrom('', 'discard', 'noatime,nodiratime', 'a,,b', 'a\nb', 'x,"y"', 'context=a', ',', 'a\0b'),
            fc.string({ maxLength: 20 }),
          ),
        ),
        dataDevice: mostly(fc.constantFrom('/dev/sdb', '/dev/', 'sdb', '')),
        metadataDevice: mostly(fc.constantFrom('/dev/sdc', '/dev/', 'sdc', '')),
        thinPoolDevice: mostly(fc.constantFrom('pool', '', 'docker-pool')),
        discardOnDelete: mostly(fc.boolean()),
        deferredRemoval: mostly(fc.boolean()),
        deferredDeletion: mostly(fc.boolean()),
        minFreeSpacePercent: mostly(fc.oneof(fc.integer({ min: -5, max: 105 }), fc.double())),
        ffi: mostly(fc.constantFrom('ffi-rs', 'koffi', 'node-ffi')),
        deferredDeletionIntervalMs: mostly(fc.oneof(fc.integer({ min: -5, max: 100_000 }), fc.double())),
        lockTimeoutMs: mostly(fc.oneof(fc.integer({ min: -5, max: 100_000 }), fc.double())),
      },
      { requiredKeys: [] },
    ),
    fc.option(fc.dictionary(fc.string({ maxLength: 12 }), anyValue, { maxKeys: 2 }), { nil: undefined, freq: 8 }),
    fc.boolean(),
  )
  .map(([o, extra, keepHome]) => {
    const options: Record<string, unknown> = extra === undefined ? o : { ...o, ...extra };
    if (keepHome) options.home = '/var/lib/dm';
    return options as unknown;
  });

/** Valid options, then up to three keys set to values of any type (or unknown keys added). */
const OPTION_KEYS = [
  'home',
  'baseSize',
  'loopDataSize',
  'loopMetadataSize',
  'blockSize',
  'filesystem',
  'mkfsArgs',
  'mountOptions',
  'dataDevice',
  'metadataDevice',
  'thinPoolDevice',
  'discardOnDelete',
  'deferredRemoval',
  'deferredDeletion',
  'minFreeSpacePercent',
  'ffi',
  'deferredDeletionIntervalMs',
  'lockTimeoutMs',
] as const;
const validOptionsArb = fc
  .record(
    {
      home: fc.constantFrom('/var/lib/dm', '/', '/a/b/', '///', '/tmp/dm home'),
      baseSize: fc.constantFrom('10G', '16M', 16777216, 1n << 34n, '20GiB', '1.5G'),
      loopDataSize: fc.constantFrom('100G', '16M', '1T', 1n << 40n),
      loopMetadataSize: fc.constantFrom('2G', '2M', '4GiB', 2097152),
      blockSize: fc.constantFrom('64k', '128k', '1M', '1G', 65536, 65536n, '192k'),
      filesystem: fc.constantFrom('ext4', 'xfs'),
      mkfsArgs: fc.array(
        fc.string({ maxLength: 8 }).filter((a) => !a.includes('\0')),
        { maxLength: 3 },
      ),
      mountOptions: fc.constantFrom('', 'discard', 'noatime,nodiratime', 'a,,b', 'context=system_u:object_r:x:s0', ','),
      dataDevice: fc.constantFrom('/dev/sdb', '/dev/vdb1'),
      metadataDevice: fc.constantFrom('/dev/sdc', '/dev/vdc1'),
      thinPoolDevice: fc.constantFrom('pool', 'docker-pool'),
      discardOnDelete: fc.boolean(),
      deferredRemoval: fc.boolean(),
      deferredDeletion: fc.boolean(),
      minFreeSpacePercent: fc.integer({ min: 0, max: 99 }),
      ffi: fc.constantFrom('ffi-rs', 'koffi'),
      deferredDeletionIntervalMs: fc.integer({ min: 0, max: 100_000 }),
      lockTimeoutMs: fc.oneof(fc.integer({ min: 0, max: 100_000 }), fc.constant(Infinity)),
    },
    { requiredKeys: ['home'] },
  )
  .map((o) => {
    const options: Record<string, unknown> = { ...o };
    if ((options.dataDevice === undefined) !== (options.metadataDevice === undefined)) {
      delete options.dataDevice;
      delete options.metadataDevice;
    }
    if (options.dataDevice !== undefined) delete options.thinPoolDevice;
    return options;
  });
const perturbedOptionsArb = fc
  .tuple(
    validOptionsArb,
    fc.array(
      fc.tuple(
        fc.oneof(
          { weight: 5, arbitrary: fc.constantFrom<string>(...OPTION_KEYS) },
          { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
        ),
        anyValue,
      ),
      { maxLength: 3 },
    ),
  )
  .map(([options, perturb]) => {
    for (const [key, v] of perturb)
      Object.defineProperty(options, key, { value: v, enumerable: true, writable: true, configurable: true });
    return options as unknown;
  });

const MOUNT_OPTION = /^[A-Za-z0-9_.+\-/:=@]+$/;

test('resolveOptions: objects with random keys and values give options or InvalidArgumentError', (t) => {
  let accepted = 0;
  const arb = fc.oneof(
    { weight: 4, arbitrary: validOptionsArb as fc.Arbitrary<unknown> },
    { weight: 8, arbitrary: perturbedOptionsArb },
    { weight: 4, arbitrary: optionsArb },
    { weight: 1, arbitrary: anyValue },
    { weight: 1, arbitrary: fc.object() },
  );
  check(t, arb, runs(4000), (input) => {
    const out = attempt(() => resolveOptions(input as DriverOptions), [InvalidArgumentError]);
    if (!out.ok) return;
    accepted++;
    const r = out.value;
    assertOk(typeof r.home === 'string' && r.home.startsWith('/') && !r.home.includes('\0') && !r.home.includes('\n'));
    assertOk(r.home === '/' || !r.home.endsWith('/'));
    for (const [size, min] of [
      [r.baseSize, 16n << 20n],
      [r.loopDataSize, 16n << 20n],
      [r.loopMetadataSize, 2n << 20n],
    ] as const) {
      assertOk(typeof size === 'bigint' && size >= min && size % 512n === 0n);
    }
    assertOk(r.blockSize >= 128n && r.blockSize <= 2097152n && r.blockSize % 128n === 0n);
    assertOk(r.filesystem === 'ext4' || r.filesystem === 'xfs');
    assertOk(Array.isArray(r.mkfsArgs) && r.mkfsArgs.every((a) => typeof a === 'string' && !a.includes('\0')));
    assertOk(
      Array.isArray(r.mountOptions) && r.mountOptions.every((o) => typeof o === 'string' && MOUNT_OPTION.test(o)),
    );
    assertOk((r.dataDevice === undefined) === (r.metadataDevice === undefined));
    for (const d of [r.dataDevice, r.metadataDevice])
      assertOk(d === undefined || (typeof d === 'string' && d.startsWith('/dev/')));
    assertOk(r.thinPoolDevice === undefined || (typeof r.thinPoolDevice === 'string' && r.thinPoolDevice !== ''));
    assertOk(r.thinPoolDevice === undefined || r.dataDevice === undefined);
    assertOk(Number.isInteger(r.minFreeSpacePercent) && r.minFreeSpacePercent >= 0 && r.minFreeSpacePercent <= 99);
    assertOk(Number.isInteger(r.deferredDeletionIntervalMs) && r.deferredDeletionIntervalMs >= 0);
    assertOk(r.lockTimeoutMs === Infinity || (Number.isInteger(r.lockTimeoutMs) && r.lockTimeoutMs >= 0));
    for (const b of [r.discardOnDelete, r.deferredRemoval, r.deferredDeletion]) assertOk(typeof b === 'boolean');
    assertOk(r.ffi === undefined || r.ffi === 'ffi-rs' || r.ffi === 'koffi');
  });
  t.log(`${accepted} accepted`);
  t.true(accepted > 0, 'some generated options are valid');
});

const idArb = fc.oneof(
  fc.string({ unit: fc.constantFrom(...'aZ09_.-/\\\0 \n%'), maxLength: 90 }),
  fc.string({ unit: fc.constantFrom(...'abcdef0123456789._-'), minLength: 1, maxLength: 82 }),
  fc.string({ unit: 'binary', maxLength: 90 }),
  fc.constantFrom(
    '.',
    '..',
    '...',
    'a..b',
    '..a',
    'a/..',
    '/etc',
    'a'.repeat(80),
    'a'.repeat(81),
    '.hidden',
    '-x',
    '_x',
    'a.',
    'a-',
    'a\n',
    'a\r',
    '\u0130',
    '\u212a',
    'ａ',
    'a\u0000',
  ),
);

test('assertLayerId: accepted ids cannot name a path outside <home>/mnt', (t) => {
  let accepted = 0;
  check(
    t,
    fc.tuple(
      fc.oneof({ weight: 6, arbitrary: idArb as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: anyValue }),
      fc.constantFrom('/var/lib/dm', '/', '/tmp/x/'),
    ),
    runs(5000),
    ([id, home]) => {
      const out = attempt(() => assertLayerId(id), [InvalidArgumentError]);
      if (!out.ok) return;
      accepted++;
      assertOk(typeof id === 'string');
      assertOk(id.length >= 1 && id.length <= 80);
      assertOk(!id.includes('/') && !id.includes('\\') && !id.includes('\0') && !id.includes('\n'));
      assertOk(id !== '.' && id !== '..' && !id.includes('..'));
      assertOk(/^[\x21-\x7e]+$/.test(id), 'printable ASCII only');
      const base = join(home, 'mnt');
      const full = join(home, 'mnt', id);
      assertOk(full.startsWith(base + sep), `${full} is inside ${base}`);
      strictEqual(relative(base, full), id);
      strictEqual(resolve(full), full);
    },
  );
  t.log(`${accepted} accepted`);
  t.true(accepted > 0);
});

test('assertMountLabel: accepted labels hold no quote, newline or NUL', (t) => {
  const labelArb = fc.oneof(
    fc.string({ unit: fc.constantFrom(...'system_u:object_r:svirt_sandbox_file_t:s0:c1,c2"\n\0 \\'), maxLength: 60 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.constantFrom('system_u:object_r:container_file_t:s0:c10,c20', 'a"b', 'a\nb', 'a\0', '', 'x y'),
  );
  check(
    t,
    fc.oneof({ weight: 6, arbitrary: labelArb as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: anyValue }),
    runs(3000),
    (label) => {
      const out = attempt(() => assertMountLabel(label), [InvalidArgumentError]);
      if (!out.ok) return;
      assertOk(typeof label === 'string' && label !== '');
      assertOk(!/["\n\r\0\s\\]/.test(label), JSON.stringify(label));
    },
  );
});

// ---------------------------------------------------------------------------------------------
// parseSize
// ---------------------------------------------------------------------------------------------

// Docker's grammar (go-units RAMInBytes): [kmgtp] then an optional i and an optional b, all binary.
const SUFFIXES: Record<string, bigint> = { '': 1n, b: 1n, i: 1n, ib: 1n };
['k', 'm', 'g', 't', 'p'].forEach((p, i) => {
  for (const tail of ['', 'i', 'b', 'ib']) SUFFIXES[`${p}${tail}`] = 1024n ** BigInt(i + 1);
});
const INT64_MAX = (1n << 63n) - 1n;

const sizeGrammarArb = fc.record({
  lead: fc.constantFrom('', '', '', ' ', '\t'),
  whole: fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 25 }),
  fraction: fc.option(fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 12 }), {
    nil: undefined,
  }),
  gap: fc.constantFrom('', '', ' ', '  ', '\t'),
  suffix: fc.oneof(
    fc.constantFrom(...Object.keys(SUFFIXES), 'e', 'eb').chain((s) => fc.mixedCase(fc.constant(s))),
    fc.string({ unit: fc.constantFrom(...'abgikmpteBIGKx'), maxLength: 4 }),
  ),
  trail: fc.constantFrom('', '', '', ' ', '\n'),
});

test('parseSize: sizes from the grammar give the byte count Docker reads', (t) => {
  check(t, sizeGrammarArb, runs(3000), (c) => {
    const input = `${c.lead}${c.whole}${c.fraction === undefined ? '' : `.${c.fraction}`}${c.gap}${c.suffix}${c.trail}`;
    const out = attempt(() => parseSize(input), [InvalidArgumentError]);
    // After the number: at most one space, then a unit (or none); nothing before the number.
    const rest = `${c.gap}${c.suffix}${c.trail}`;
    const unit = (rest.startsWith(' ') ? rest.slice(1) : rest).toLowerCase();
    const multiplier = c.lead === '' && Object.hasOwn(SUFFIXES, unit) ? SUFFIXES[unit] : undefined;
    const digits = BigInt(c.whole + (c.fraction ?? ''));
    const scale = 10n ** BigInt((c.fraction ?? '').length);
    const expected = multiplier === undefined ? undefined : (digits * multiplier) / scale;
    if (expected === undefined || expected > INT64_MAX) failure(out, InvalidArgumentError, input);
    else strictEqual(value(out, input), expected);
  });
});

test('parseSize: random strings, numbers and values give Bytes or InvalidArgumentError', (t) => {
  const arb = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.string({ unit: fc.constantFrom(...'0123456789.kKmMgGiIbB eE-+x_'), maxLength: 30 }),
    fc.integer(),
    fc.double(),
    fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }),
    fc.constantFrom(NaN, Infinity, -Infinity, -0, 2 ** 53, -1, 0.5),
    anyValue,
  );
  check(t, arb, runs(4000), (input) => {
    const out = attempt(() => parseSize(input as string), [InvalidArgumentError]);
    if (!out.ok) return;
    assertOk(typeof out.value === 'bigint' && out.value >= 0n);
    if (typeof input === 'number') strictEqual(out.value, BigInt(input));
    if (typeof input === 'bigint') strictEqual(out.value, input);
  });
});

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
  );
  check(t, refArb, runs(4000), (device) => {
    if (device === undefined) return; // no device: the commands that take none
    const fast = Buffer.alloc(DM_IOCTL_SIZE, 0x5a);
    const label = attempt(() => writeDeviceRef(fast, device as DeviceRef, ''), [InvalidArgumentError]);
    const isObject = typeof device === 'object' && device !== null;
    const name = typeof device === 'string' ? device : isObject && 'name' in device ? device.name : undefined;
    const uuid = isObject && !('name' in device) && 'uuid' in device ? device.uuid : undefined;
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
