// Property-based fuzzing of the status grammars the kernel prints: thin-pool status
// (parsePoolStatus) and thin status (parseThinStatus). Random lines and mutated valid lines must
// give a value or ParseError, never a TypeError / RangeError / SyntaxError, within the harness's
// time budget; valid lines generated from each grammar must round-trip to the values put in.
// Harness and line generators: helpers/fuzz-harness.ts, helpers/fuzz-lines.ts.
//
// FUZZ_SCALE=<factor> multiplies every property's run count (e.g. 10 for a long soak).
import test from 'ava';
import fc from 'fast-check';
import { deepStrictEqual, ok as assertOk, strictEqual } from 'node:assert/strict';
import { ParseError } from '../../src/errors.js';
import {
  parsePoolStatus,
  parsePoolStatusByTokens,
  parseThinStatus,
  type ParsePoolStatusOptions,
  type PoolStatus,
  type ThinStatus,
} from '../../src/thin/status.js';
import type { Sectors } from '../../src/thin/units.js';
import { attempt, check, failure, inU64, runs, U64_MAX, u64, value } from './helpers/fuzz-harness.js';
import { blockSizeArb, joinLine, leadArb, mutatedLine, randomLine, sepArb, trailArb } from './helpers/fuzz-lines.js';

// ---------------------------------------------------------------------------------------------
// thin-pool status
// ---------------------------------------------------------------------------------------------

const usedTotal = u64.chain((total) => fc.bigInt({ min: 0n, max: total }).map((used) => ({ used, total })));

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
  const tokens = fc.oneof(
    { weight: 9, arbitrary: poolLineArb.map(poolTokens) },
    { weight: 1, arbitrary: fc.constantFrom(['Fail'], ['Error']) },
  );
  const arb = fc.tuple(mutatedLine(tokens, 3), fc.option(blockSizeArb, { nil: undefined }));
  check(t, arb, runs(4000), ([line, blockSize]) => {
    const opts = poolOpts({ blockSize });
    const out = attempt(() => parsePoolStatus(line, opts), [ParseError]);
    if (out.ok) checkPoolStatus(out.value, opts);
  });
});

/** Both paths of parsePoolStatus: the same value, or the same ParseError. */
function samePoolAnswers(line: string, opts: ParsePoolStatusOptions): void {
  const fast = attempt(() => parsePoolStatus(line, opts), [ParseError]);
  const reference = attempt(() => parsePoolStatusByTokens(line, opts), [ParseError]);
  if (reference.ok) deepStrictEqual(value(fast, line), reference.value);
  else deepStrictEqual(failure(fast, ParseError, line).message, failure(reference, ParseError, line).message);
}

/** Numbers the fast path must judge as the tokenizer does: 20 digits each side of 2^64, leading zeros. */
const edgeNumberArb = fc.oneof(
  u64.map(String),
  fc.constantFrom('18446744073709551615', '18446744073709551616', '99999999999999999999', '000000000000000000007'),
  fc.nat(9999).map((n) => `000${n}`),
);

test('parsePoolStatus: the one-expression path answers as the token-by-token one', (t) => {
  // One number field (transaction id, metadata or data used/total, held root, watermark) at the edge.
  const edgeTokens = fc
    .tuple(poolLineArb, edgeNumberArb, edgeNumberArb, fc.constantFrom(0, 1, 2, 3, 8))
    .map(([p, a, b, slot]) => {
      const toks = poolTokens(p);
      if (slot < toks.length) toks[slot] = slot === 1 || slot === 2 ? `${a}/${b}` : a;
      return { line: joinLine(toks, p.seps, p.lead, p.trail), p };
    });
  const arb = fc.oneof(
    poolLineArb.map((p) => ({ line: joinLine(poolTokens(p), p.seps, p.lead, p.trail), p })),
    edgeTokens,
    fc.tuple(mutatedLine(poolLineArb.map(poolTokens), 3), poolLineArb).map(([line, p]) => ({ line, p })),
    fc.tuple(randomLine, poolLineArb).map(([line, p]) => ({ line, p })),
  );
  check(t, arb, runs(4000), ({ line, p }) => samePoolAnswers(line, poolOpts(p)));
  // A data block size that is no size at all is the caller's error on both paths.
  const line = '1 1/2 1/2 - rw discard_passdown error_if_no_space - 1 ';
  for (const dataBlockSize of [0n, 100n] as Sectors[])
    t.throws(() => parsePoolStatus(line, { dataBlockSize }), { name: 'InvalidArgumentError' });
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
  check(t, mutatedLine(tokens), runs(3000), (line) => {
    const out = attempt(() => parseThinStatus(line), [ParseError]);
    if (out.ok) checkThinStatus(out.value);
  });
});
