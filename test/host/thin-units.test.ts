// Units (branded bigints), their conversions, parseSize, and the thin-pool message builders.
import test, { type ExecutionContext } from 'ava';
import { InvalidArgumentError } from '../../src/errors.js';
import {
  assertThinId,
  assertTransactionId,
  createSnapMessage,
  createThinMessage,
  deleteMessage,
  MAX_THIN_ID,
  releaseMetadataSnapMessage,
  reserveMetadataSnapMessage,
  setTransactionIdMessage,
} from '../../src/thin/messages.js';
import {
  assertDataBlockSize,
  bytes,
  bytesToSectors,
  dataBlocks,
  dataBlocksToSectors,
  isSectorAligned,
  METADATA_BLOCK_SECTORS,
  METADATA_BLOCK_SIZE,
  metadataBlocks,
  metadataBlocksToBytes,
  metadataBlocksToSectors,
  parseSize,
  SECTOR_SIZE,
  sectors,
  sectorsToBytes,
  sectorsToDataBlocks,
  U64_MAX,
  type Bytes,
  type DataBlocks,
  type Sectors,
} from '../../src/thin/units.js';

/** t.is for unit values: ava's typing wants the expected literal to extend the branded type. */
function is(t: ExecutionContext, actual: unknown, expected: unknown, message?: string): void {
  t.is(actual, expected, message);
}

function invalid(t: ExecutionContext, fn: () => unknown, argument: string, message?: RegExp): void {
  const e = t.throws(fn, { instanceOf: InvalidArgumentError, ...(message ? { message } : {}) });
  t.is(e?.argument, argument);
  t.is(e?.code, 'ERR_DM_INVALID_ARGUMENT');
}

// ---------------------------------------------------------------------------------------------
// constants and constructors

test('constants', (t) => {
  t.is(SECTOR_SIZE, 512);
  t.is(METADATA_BLOCK_SIZE, 4096);
  t.is(METADATA_BLOCK_SECTORS, 8);
  t.is(U64_MAX, 18446744073709551615n);
});

const constructors = [
  ['sectors', sectors],
  ['bytes', bytes],
  ['dataBlocks', dataBlocks],
  ['metadataBlocks', metadataBlocks],
] as const;

for (const [name, make] of constructors) {
  test(`${name}(): accepts non-negative integers as number or bigint`, (t) => {
    is(t, make(0), 0n);
    is(t, make(42), 42n);
    is(t, make(42n), 42n);
    is(t, make(Number.MAX_SAFE_INTEGER), BigInt(Number.MAX_SAFE_INTEGER));
    is(t, make(2n ** 63n), 2n ** 63n);
    t.is(typeof make(1), 'bigint');
  });

  test(`${name}(): rejects negatives, fractions, NaN, Infinity, unsafe numbers, other types`, (t) => {
    invalid(t, () => make(-1), name, /negative/);
    invalid(t, () => make(-1n), name, /negative/);
    invalid(t, () => make(1.5), name, /integer/);
    invalid(t, () => make(Number.NaN), name, /integer/);
    invalid(t, () => make(Number.POSITIVE_INFINITY), name, /integer/);
    invalid(t, () => make(2 ** 60), name, /bigint/);
    invalid(t, () => make('5' as unknown as number), name, /number or bigint/);
    invalid(t, () => make(undefined as unknown as number), name);
  });

  test(`${name}(): names the caller's argument`, (t) => {
    invalid(t, () => make(-1, 'size'), 'size');
  });
}

test('u64 counts cap at 2^64-1; bytes do not', (t) => {
  is(t, sectors(U64_MAX), U64_MAX);
  invalid(t, () => sectors(U64_MAX + 1n), 'sectors', /at most/);
  invalid(t, () => dataBlocks(U64_MAX + 1n), 'dataBlocks', /at most/);
  invalid(t, () => metadataBlocks(U64_MAX + 1n), 'metadataBlocks', /at most/);
  is(t, bytes(U64_MAX + 1n), U64_MAX + 1n);
});

test('units are distinct types at compile time', (t) => {
  const s: Sectors = sectors(8);
  const b: Bytes = bytes(4096);
  // @ts-expect-error bytes are not sectors
  const wrong1: Sectors = b;
  // @ts-expect-error a plain bigint is not a unit
  const wrong2: DataBlocks = 5n;
  // @ts-expect-error sectors are not data blocks
  const wrong3: DataBlocks = s;
  // Never called: only the compiler looks at this.
  const neverCalled = (): void => {
    // @ts-expect-error bytesToSectors takes bytes, not sectors
    bytesToSectors(s);
    // @ts-expect-error dataBlocksToSectors takes data blocks, not sectors
    dataBlocksToSectors(s, s);
  };
  t.is(typeof neverCalled, 'function');
  is(t, wrong1, 4096n);
  is(t, wrong2, 5n);
  is(t, wrong3, 8n);
});

// ---------------------------------------------------------------------------------------------
// conversions

test('bytesToSectors / sectorsToBytes', (t) => {
  is(t, bytesToSectors(bytes(0)), 0n);
  is(t, bytesToSectors(bytes(512)), 1n);
  is(t, bytesToSectors(bytes(10n * 2n ** 30n)), 20971520n);
  is(t, sectorsToBytes(sectors(20971520)), 10n * 2n ** 30n);
  is(t, sectorsToBytes(sectors(U64_MAX)), U64_MAX * 512n);
  is(t, bytesToSectors(sectorsToBytes(sectors(12345))), 12345n);
});

test('bytesToSectors rejects a partial sector', (t) => {
  invalid(t, () => bytesToSectors(bytes(511)), 'bytes', /not a multiple of the 512-byte sector/);
  invalid(t, () => bytesToSectors(bytes(513)), 'bytes');
  invalid(t, () => bytesToSectors(bytes(1000), 'size'), 'size');
});

test('isSectorAligned: whole 512-byte sectors only', (t) => {
  for (const b of [0n, 512n, 4096n, 10n * 2n ** 30n]) t.true(isSectorAligned(b), `${b}`);
  for (const b of [1n, 511n, 513n, 1000n]) t.false(isSectorAligned(b), `${b}`);
});

test('dataBlocksToSectors / sectorsToDataBlocks', (t) => {
  const bs = sectors(128);
  is(t, dataBlocksToSectors(dataBlocks(0), bs), 0n);
  is(t, dataBlocksToSectors(dataBlocks(10), bs), 1280n);
  is(t, sectorsToDataBlocks(sectors(1280), bs), 10n);
  is(t, sectorsToDataBlocks(sectors(0), bs), 0n);
  is(t, sectorsToDataBlocks(sectors(1300), bs, 'floor'), 10n);
  is(t, sectorsToDataBlocks(sectors(1300), bs, 'ceil'), 11n);
  is(t, sectorsToDataBlocks(sectors(1280), bs, 'ceil'), 10n);
});

test('sectorsToDataBlocks rejects partial blocks by default, zero block sizes, bad rounding', (t) => {
  invalid(
    t,
    () => sectorsToDataBlocks(sectors(1300), sectors(128)),
    'sectors',
    /not a whole number of 128-sector data blocks/,
  );
  invalid(t, () => sectorsToDataBlocks(sectors(1300), sectors(0)), 'blockSize', /positive/);
  invalid(t, () => dataBlocksToSectors(dataBlocks(1), sectors(0)), 'blockSize', /positive/);
  invalid(t, () => sectorsToDataBlocks(sectors(1300), sectors(128), 'round' as 'floor'), 'rounding');
});

test('dataBlocksToSectors overflowing u64 is an error', (t) => {
  invalid(t, () => dataBlocksToSectors(dataBlocks(U64_MAX), sectors(128)), 'sectors', /at most/);
});

test('metadata block conversions', (t) => {
  is(t, metadataBlocksToBytes(metadataBlocks(3)), 12288n);
  is(t, metadataBlocksToSectors(metadataBlocks(3)), 24n);
  t.is(bytesToSectors(metadataBlocksToBytes(metadataBlocks(3))), metadataBlocksToSectors(metadataBlocks(3)));
});

test('assertDataBlockSize', (t) => {
  is(t, assertDataBlockSize(128), 128n);
  is(t, assertDataBlockSize(sectors(2097152)), 2097152n);
  is(t, assertDataBlockSize(128n * 3n), 384n);
  for (const bad of [0, 127, 129, 192, 2097152 + 128, 4194304, -128]) {
    invalid(t, () => assertDataBlockSize(bad), 'dataBlockSize');
  }
  invalid(t, () => assertDataBlockSize(100, 'blockSize'), 'blockSize', /multiple of 128/);
});

// ---------------------------------------------------------------------------------------------
// parseSize

// As Docker's go-units RAMInBytes reads dm.* sizes: every unit binary, "i" and "b" optional.
const sizes: [input: string | number | bigint, expected: bigint][] = [
  ['0', 0n],
  ['4096', 4096n],
  ['4096B', 4096n],
  ['4096b', 4096n],
  ['64k', 65536n],
  ['64K', 65536n],
  ['64KiB', 65536n],
  ['64kib', 65536n],
  ['64KB', 65536n],
  ['5kB', 5120n],
  ['512M', 512n * 2n ** 20n],
  ['512MiB', 512n * 2n ** 20n],
  ['512MB', 512n * 2n ** 20n],
  ['10G', 10n * 2n ** 30n],
  ['10g', 10n * 2n ** 30n],
  ['10GB', 10n * 2n ** 30n],
  ['10Gi', 10n * 2n ** 30n],
  ['100GiB', 100n * 2n ** 30n],
  ['2T', 2n * 2n ** 40n],
  ['1P', 2n ** 50n],
  ['8191P', 8191n * 2n ** 50n],
  ['1.5G', 3n * 2n ** 29n],
  ['0.5k', 512n],
  ['0.1k', 102n],
  ['1.5', 1n],
  ['10 G', 10n * 2n ** 30n],
  ['10iB', 10n],
  ['9223372036854775807', 2n ** 63n - 1n],
  [4096, 4096n],
  [4096n, 4096n],
];

for (const [input, expected] of sizes) {
  test(`parseSize(${typeof input === 'string' ? JSON.stringify(input) : `${String(input)} as ${typeof input}`})`, (t) => {
    is(t, parseSize(input), expected);
  });
}

const badSizes: [input: unknown, why: RegExp][] = [
  ['', /is not a size/],
  ['   ', /is not a size/],
  ['G', /is not a size/],
  ['-1', /is not a size/],
  ['-1G', /is not a size/],
  ['+1G', /is not a size/],
  ['1e3', /is not a size/],
  ['0x10', /is not a size/],
  ['16E', /unknown unit "E"/],
  ['10X', /unknown unit "X"/],
  ['10GG', /unknown unit "GG"/],
  ['10GiBs', /unknown unit "GiBs"/],
  ['10  G', /is not a size/],
  ['  64k  ', /is not a size/],
  ['.5G', /is not a size/],
  ['1.G', /is not a size/],
  ['1,5G', /is not a size/],
  ['ten', /is not a size/],
  ['8192P', /too large/],
  ['99999999999999999999', /too large/],
  [-1, /negative/],
  [1.5, /integer/],
  [Number.NaN, /integer/],
  [null, /size string, number or bigint/],
  [{}, /size string, number or bigint/],
];

for (const [input, why] of badSizes) {
  test(`parseSize rejects ${typeof input === 'string' ? JSON.stringify(input) : String(input)}`, (t) => {
    invalid(t, () => parseSize(input as string), 'size', why);
  });
}

test('parseSize names the caller argument', (t) => {
  invalid(t, () => parseSize('junk', 'dataSize'), 'dataSize');
});

// ---------------------------------------------------------------------------------------------
// messages

test('message builders', (t) => {
  t.is(createThinMessage(0), 'create_thin 0');
  t.is(createThinMessage(MAX_THIN_ID), 'create_thin 16777215');
  t.is(createSnapMessage(2, 1), 'create_snap 2 1');
  t.is(deleteMessage(7), 'delete 7');
  t.is(setTransactionIdMessage(0n, 1n), 'set_transaction_id 0 1');
  t.is(setTransactionIdMessage(5, 6), 'set_transaction_id 5 6');
  t.is(setTransactionIdMessage(U64_MAX - 1n, U64_MAX), 'set_transaction_id 18446744073709551614 18446744073709551615');
  t.is(reserveMetadataSnapMessage(), 'reserve_metadata_snap');
  t.is(releaseMetadataSnapMessage(), 'release_metadata_snap');
});

test('thin ids: 0 and 2^24-1 accepted', (t) => {
  t.is(MAX_THIN_ID, 2 ** 24 - 1);
  t.notThrows(() => assertThinId(0));
  t.notThrows(() => assertThinId(2 ** 24 - 1));
});

const badIds: [name: string, id: unknown][] = [
  ['-1', -1],
  ['2^24', 2 ** 24],
  ['1.5', 1.5],
  ['NaN', Number.NaN],
  ['Infinity', Number.POSITIVE_INFINITY],
  ['a string', '1'],
  ['a bigint', 1n],
];

for (const [name, id] of badIds) {
  test(`thin id ${name} rejected by assertThinId and every builder`, (t) => {
    invalid(t, () => assertThinId(id as number), 'id', /24 bits/);
    invalid(t, () => assertThinId(id as number, 'originId'), 'originId');
    invalid(t, () => createThinMessage(id as number), 'id');
    invalid(t, () => deleteMessage(id as number), 'id');
    invalid(t, () => createSnapMessage(id as number, 1), 'id');
    invalid(t, () => createSnapMessage(1, id as number), 'originId');
  });
}

test('transaction ids are u64', (t) => {
  t.is(assertTransactionId(0), 0n);
  t.is(assertTransactionId(U64_MAX), U64_MAX);
  invalid(t, () => assertTransactionId(-1), 'transactionId');
  invalid(t, () => assertTransactionId(-1n), 'transactionId');
  invalid(t, () => assertTransactionId(U64_MAX + 1n), 'transactionId');
  invalid(t, () => assertTransactionId(1.5), 'transactionId');
  invalid(t, () => assertTransactionId(2 ** 60), 'transactionId', /bigint/);
  invalid(t, () => setTransactionIdMessage(-1n, 0n), 'current');
  invalid(t, () => setTransactionIdMessage(0n, U64_MAX + 1n), 'next');
  invalid(t, () => setTransactionIdMessage('1' as unknown as bigint, 2n), 'current');
});
