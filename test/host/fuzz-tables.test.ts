// Property-based fuzzing of the thin-pool and thin table grammars: formatPoolTable /
// parsePoolTable and formatThinTable / parseThinTable. Valid tables must round-trip (the
// kernel's echo of a pool table too: feature group always, any order, any case); random and
// mutated lines must give a value or ParseError, and values of any type given to the formatters
// a line or InvalidArgumentError, never a TypeError / RangeError, within the harness's budget.
// Harness and line generators: helpers/fuzz-harness.ts, helpers/fuzz-lines.ts.
//
// FUZZ_SCALE=<factor> multiplies every property's run count (e.g. 10 for a long soak).
import test from 'ava';
import fc from 'fast-check';
import { deepStrictEqual, ok as assertOk, strictEqual } from 'node:assert/strict';
import { InvalidArgumentError, ParseError } from '../../src/errors.js';
import {
  formatPoolTable,
  formatThinTable,
  parsePoolTable,
  parseThinTable,
  type PoolTable,
  type PoolTableFeatures,
  type PoolTableInput,
  type ThinTable,
} from '../../src/thin/status.js';
import type { DataBlocks, Sectors } from '../../src/thin/units.js';
import { anyValue, attempt, check, failure, inU64, mostly, runs, u64, value } from './helpers/fuzz-harness.js';
import { beyondU64, blockSizeArb, joinLine, mutatedLine, randomLine, sepArb, trailArb } from './helpers/fuzz-lines.js';

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
  const arb = fc.oneof(randomLine, mutatedLine(valid));
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
  const arb = fc.oneof(randomLine, mutatedLine(valid));
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
