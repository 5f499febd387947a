// Status grammar for thin-pool / thin targets: every form pool_status() and thin_status() in
// drivers/md/dm-thin.c can print, the variants older kernels print, and lines that must be
// rejected; and what the pool's status means (the mode for messages, metadata low water).
// The table grammar is in thin-table.test.ts.
import test, { type ExecutionContext } from 'ava';
import { InvalidArgumentError, ParseError } from '../../src/errors.js';
import { metadataLow } from '../../src/thin/events.js';
import {
  parsePoolStatus,
  parseThinStatus,
  poolModeOf,
  poolTakesMessages,
  type PoolStatusOk,
} from '../../src/thin/status.js';
import { sectors } from '../../src/thin/units.js';

/** t.is for unit values: ava's typing wants the expected literal to extend the branded type. */
function is(t: ExecutionContext, actual: unknown, expected: unknown, message?: string): void {
  t.is(actual, expected, message);
}

function ok(line: string, opts?: Parameters<typeof parsePoolStatus>[1]): PoolStatusOk {
  const s = parsePoolStatus(line, opts);
  if (s.kind !== 'ok') throw new Error(`expected kind ok, got ${s.kind} for ${JSON.stringify(line)}`);
  return s;
}

// ---------------------------------------------------------------------------------------------
// pool status: field-by-field forms

type PoolField =
  | 'transactionId'
  | 'heldMetadataRoot'
  | 'mode'
  | 'discard'
  | 'noSpace'
  | 'needsCheck'
  | 'metadataLowWatermark';
type PoolCase = [line: string, expected: Partial<Record<PoolField, bigint | string | boolean | null | undefined>>];

const poolCases: PoolCase[] = [
  // Current kernels: 9 fields and a trailing space.
  [
    '0 10/4096 0/16384 - rw discard_passdown queue_if_no_space - 1024 ',
    {
      transactionId: 0n,
      heldMetadataRoot: null,
      mode: 'rw',
      discard: 'discard_passdown',
      noSpace: 'queue',
      needsCheck: false,
      metadataLowWatermark: 1024n,
    },
  ],
  ['5 10/4096 0/16384 - ro discard_passdown queue_if_no_space - 1024', { mode: 'ro', transactionId: 5n }],
  [
    '5 10/4096 16384/16384 - out_of_data_space discard_passdown error_if_no_space - 1024',
    { mode: 'out_of_data_space', noSpace: 'error' },
  ],
  ['5 10/4096 0/16384 - rw no_discard_passdown queue_if_no_space - 1024', { discard: 'no_discard_passdown' }],
  ['5 10/4096 0/16384 - rw ignore_discard queue_if_no_space - 1024', { discard: 'ignore_discard' }],
  ['5 10/4096 0/16384 - rw discard_passdown error_if_no_space - 1024', { noSpace: 'error' }],
  ['5 10/4096 0/16384 - ro discard_passdown queue_if_no_space needs_check 1024 ', { needsCheck: true, mode: 'ro' }],
  // Held metadata root as a number (after reserve_metadata_snap).
  ['5 20/4096 0/16384 17 rw discard_passdown queue_if_no_space - 1024', { heldMetadataRoot: 17n }],
  // u64 transaction id above 2^53 stays exact.
  [
    '18446744073709551615 10/4096 0/16384 - rw discard_passdown queue_if_no_space - 1024',
    { transactionId: 18446744073709551615n },
  ],
  // Kernels before 4.19: no metadata low watermark.
  [
    '5 10/4096 0/16384 - rw discard_passdown queue_if_no_space - ',
    { needsCheck: false, metadataLowWatermark: undefined },
  ],
  [
    '5 10/4096 0/16384 - rw discard_passdown queue_if_no_space needs_check',
    { needsCheck: true, metadataLowWatermark: undefined },
  ],
  // Kernels before the needs_check field: the flag is not reported (undefined, not false).
  [
    '5 10/4096 0/16384 - rw discard_passdown queue_if_no_space ',
    { needsCheck: undefined, metadataLowWatermark: undefined },
  ],
  // Separators other than one space are tolerated, as is a trailing newline.
  [
    '5  10/4096\t0/16384 - rw discard_passdown queue_if_no_space - 1024\n',
    { transactionId: 5n, metadataLowWatermark: 1024n },
  ],
];

for (const [line, expected] of poolCases) {
  test(`pool status ${JSON.stringify(line)}`, (t) => {
    const s = ok(line);
    for (const [key, value] of Object.entries(expected)) {
      is(t, s[key as PoolField], value, key);
    }
  });
}

test('pool status: usage figures in blocks and bytes', (t) => {
  const s = ok('3 100/4096 250/1000 - rw discard_passdown queue_if_no_space - 1024 ', { dataBlockSize: sectors(128) });
  is(t, s.metadata.usedBlocks, 100n);
  is(t, s.metadata.totalBlocks, 4096n);
  is(t, s.metadata.freeBlocks, 3996n);
  is(t, s.metadata.usedBytes, 100n * 4096n);
  is(t, s.metadata.totalBytes, 4096n * 4096n);
  is(t, s.metadata.freeBytes, 3996n * 4096n);
  is(t, s.data.usedBlocks, 250n);
  is(t, s.data.totalBlocks, 1000n);
  is(t, s.data.freeBlocks, 750n);
  is(t, s.data.blockSize, 128n);
  is(t, s.data.usedBytes, 250n * 65536n);
  is(t, s.data.totalBytes, 1000n * 65536n);
  is(t, s.data.freeBytes, 750n * 65536n);
});

test('pool status: data bytes are undefined without a data block size', (t) => {
  const s = ok('3 100/4096 250/1000 - rw discard_passdown queue_if_no_space - 1024');
  is(t, s.data.freeBlocks, 750n);
  t.is(s.data.blockSize, undefined);
  t.is(s.data.usedBytes, undefined);
  t.is(s.data.totalBytes, undefined);
  t.is(s.data.freeBytes, undefined);
});

test('pool status: block counts above 2^53 stay exact', (t) => {
  const big = 2n ** 60n + 1n;
  const s = ok(`1 1/2 ${big}/${big + 2n} - rw discard_passdown queue_if_no_space - 1`);
  is(t, s.data.usedBlocks, big);
  is(t, s.data.freeBlocks, 2n);
});

test('pool status: used equal to total means zero free', (t) => {
  const s = ok('1 4096/4096 16384/16384 - out_of_data_space discard_passdown queue_if_no_space - 1024');
  is(t, s.metadata.freeBlocks, 0n);
  is(t, s.data.freeBlocks, 0n);
});

test('pool status: Fail and Error', (t) => {
  t.deepEqual(parsePoolStatus('Fail'), { kind: 'fail' });
  t.deepEqual(parsePoolStatus('Fail '), { kind: 'fail' });
  t.deepEqual(parsePoolStatus('Error'), { kind: 'error' });
  t.deepEqual(parsePoolStatus('Error\n'), { kind: 'error' });
});

test('pool status: a bad dataBlockSize option is an InvalidArgumentError', (t) => {
  const e = t.throws(
    () => parsePoolStatus('1 1/2 1/2 - rw discard_passdown queue_if_no_space - 1', { dataBlockSize: sectors(100) }),
    {
      instanceOf: InvalidArgumentError,
    },
  );
  t.is(e?.argument, 'dataBlockSize');
});

const badPoolLines: [line: string, why: RegExp][] = [
  ['', /expected 7 to 9 fields/],
  ['   ', /expected 7 to 9 fields/],
  ['fail', /expected 7 to 9 fields/],
  ['FAIL', /expected 7 to 9 fields/],
  ['Fail Error', /expected 7 to 9 fields/],
  ['0 10/4096 0/16384 -', /expected 7 to 9 fields/],
  // Pre-3.14 form without the no-space field is not supported.
  ['0 10/4096 0/16384 - rw discard_passdown', /expected 7 to 9 fields/],
  ['0 10/4096 0/16384 - rw discard_passdown queue_if_no_space - 1024 extra', /unexpected extra fields "extra"/],
  ['0 10/4096 0/16384 - rw discard_passdown queue_if_no_space - 1024 7 8', /unexpected extra fields "7 8"/],
  ['x 10/4096 0/16384 - rw discard_passdown queue_if_no_space - 1024', /transaction id "x" is not a decimal/],
  ['-1 10/4096 0/16384 - rw discard_passdown queue_if_no_space - 1024', /transaction id "-1"/],
  ['18446744073709551616 10/4096 0/16384 - rw discard_passdown queue_if_no_space - 1024', /does not fit in 64 bits/],
  ['0 a/b 0/16384 - rw discard_passdown queue_if_no_space - 1024', /used metadata blocks "a"/],
  ['0 10/b 0/16384 - rw discard_passdown queue_if_no_space - 1024', /total metadata blocks "b"/],
  ['0 10 0/16384 - rw discard_passdown queue_if_no_space - 1024', /metadata "10" is not <used>\/<total>/],
  ['0 10/20/30 0/16384 - rw discard_passdown queue_if_no_space - 1024', /is not <used>\/<total>/],
  ['0 10/ 0/16384 - rw discard_passdown queue_if_no_space - 1024', /total metadata blocks ""/],
  ['0 10/4096 0x1/16384 - rw discard_passdown queue_if_no_space - 1024', /used data blocks "0x1"/],
  ['0 10/4096 1.5/16384 - rw discard_passdown queue_if_no_space - 1024', /used data blocks "1.5"/],
  // used > total: only possible from a wrapped (corrupt) free count; rejected.
  [
    '0 4097/4096 0/16384 - rw discard_passdown queue_if_no_space - 1024',
    /used metadata blocks 4097 exceed the total 4096/,
  ],
  ['0 10/4096 16385/16384 - rw discard_passdown queue_if_no_space - 1024', /used data blocks 16385 exceed/],
  ['0 10/4096 0/16384 none rw discard_passdown queue_if_no_space - 1024', /held metadata root "none"/],
  ['0 10/4096 0/16384 - RW discard_passdown queue_if_no_space - 1024', /unknown mode "RW"/],
  ['0 10/4096 0/16384 - fail discard_passdown queue_if_no_space - 1024', /unknown mode "fail"/],
  ['0 10/4096 0/16384 - read_only discard_passdown queue_if_no_space - 1024', /unknown mode "read_only"/],
  ['0 10/4096 0/16384 - rw discard queue_if_no_space - 1024', /unknown discard mode "discard"/],
  ['0 10/4096 0/16384 - rw discard_passdown queue - 1024', /unknown no-space mode "queue"/],
  ['0 10/4096 0/16384 - rw queue_if_no_space discard_passdown - 1024', /unknown discard mode "queue_if_no_space"/],
  ['0 10/4096 0/16384 - rw discard_passdown queue_if_no_space yes 1024', /unknown needs_check field "yes"/],
  ['0 10/4096 0/16384 - rw discard_passdown queue_if_no_space - -', /metadata low watermark "-"/],
  ['0 10/4096 0/16384 - rw discard_passdown queue_if_no_space - low', /metadata low watermark "low"/],
  ['0 10/4096 0/16384 - rw discard_passdown queue_if_no_space toString 1024', /unknown needs_check field "toString"/],
];

for (const [line, why] of badPoolLines) {
  test(`pool status rejects ${JSON.stringify(line)}`, (t) => {
    const e = t.throws(() => parsePoolStatus(line), { instanceOf: ParseError, message: why });
    t.is(e?.input, line, 'the error quotes the whole line');
    t.is(e?.code, 'ERR_DM_PARSE');
  });
}

// ---------------------------------------------------------------------------------------------
// thin status

test('thin status: mapped and highest sector', (t) => {
  t.deepEqual(parseThinStatus('1048576 2097151'), {
    kind: 'ok',
    mappedSectors: 1048576n,
    highestMappedSector: 2097151n,
  });
  t.deepEqual(parseThinStatus('1048576 2097151 '), {
    kind: 'ok',
    mappedSectors: 1048576n,
    highestMappedSector: 2097151n,
  });
});

test('thin status: nothing mapped', (t) => {
  t.deepEqual(parseThinStatus('0 -'), { kind: 'ok', mappedSectors: 0n, highestMappedSector: null });
  t.deepEqual(parseThinStatus('0 - '), { kind: 'ok', mappedSectors: 0n, highestMappedSector: null });
});

test('thin status: sector counts above 2^53 stay exact', (t) => {
  const s = parseThinStatus('9007199254740993 18446744073709551615');
  t.deepEqual(s, { kind: 'ok', mappedSectors: 9007199254740993n, highestMappedSector: 18446744073709551615n });
});

test('thin status: Fail, Error and a bare -', (t) => {
  t.deepEqual(parseThinStatus('Fail'), { kind: 'fail' });
  t.deepEqual(parseThinStatus('Fail '), { kind: 'fail' });
  t.deepEqual(parseThinStatus('Error'), { kind: 'error' });
  t.deepEqual(parseThinStatus('-'), { kind: 'unopened' });
});

const badThinLines: [line: string, why: RegExp][] = [
  ['', /got 0 fields/],
  ['128', /got 1 fields/],
  ['fail', /got 1 fields/],
  ['128 255 3', /got 3 fields/],
  ['- 255', /nr mapped sectors "-"/],
  ['x 255', /nr mapped sectors "x"/],
  ['128 y', /highest mapped sector "y"/],
  ['128 -5', /highest mapped sector "-5"/],
  ['18446744073709551616 -', /does not fit in 64 bits/],
];

for (const [line, why] of badThinLines) {
  test(`thin status rejects ${JSON.stringify(line)}`, (t) => {
    const e = t.throws(() => parseThinStatus(line), { instanceOf: ParseError, message: why });
    t.is(e?.input, line);
  });
}

// ---------------------------------------------------------------------------------------------
// what the pool status means

test('pool mode: messages are taken in rw and out_of_data_space, not in ro, Fail, Error or needs_check', (t) => {
  const opts = { dataBlockSize: sectors(128) };
  const line = (mode: string, needsCheck: string): string =>
    `1 10/100 5/50 - ${mode} discard_passdown queue_if_no_space ${needsCheck} 0`;
  const cases: [status: ReturnType<typeof parsePoolStatus>, mode: string, needsCheck: boolean, takes: boolean][] = [
    [parsePoolStatus(line('rw', '-'), opts), 'rw', false, true],
    [parsePoolStatus(line('out_of_data_space', '-'), opts), 'out_of_data_space', false, true],
    [parsePoolStatus(line('ro', '-'), opts), 'ro', false, false],
    [parsePoolStatus(line('rw', 'needs_check'), opts), 'rw', true, false],
    [parsePoolStatus('Fail', opts), 'fail', false, false],
    [parsePoolStatus('Error', opts), 'error', false, false],
  ];
  for (const [status, mode, needsCheck, takes] of cases) {
    t.deepEqual(poolModeOf(status), { mode, needsCheck });
    t.is(poolTakesMessages(poolModeOf(status)), takes, `${mode}${needsCheck ? ' needs_check' : ''}`);
  }
});

test("metadata low water as dm-thin judges it: the space map's free blocks (status free + the reserve) at the threshold", (t) => {
  // 512 blocks (2 MiB): threshold min(1024, 128) = 128, reserve a tenth = 51; the status prints free - 51.
  const at = (used: number, threshold = 128) =>
    metadataLow(ok(`0 ${used}/512 100/1000 - rw discard_passdown error_if_no_space - ${threshold}`));
  t.false(at(300), '212 free (status) + 51 > 128');
  t.false(at(434), '78 free + 51 = 129: above');
  t.true(at(435), '77 free + 51 = 128: at the threshold');
  t.true(at(512), 'none free');
  // 64 MiB (16384 blocks): reserve 1638 > threshold 1024: the kernel raises it inside the reserve, where the status shows 0 free.
  t.false(metadataLow(ok('0 14000/16384 100/1000 - rw discard_passdown error_if_no_space - 1024')));
  t.true(metadataLow(ok('0 16384/16384 100/1000 - rw discard_passdown error_if_no_space - 1024')));
  t.false(metadataLow(ok('0 512/512 100/1000 - rw discard_passdown error_if_no_space -')), 'no threshold printed');
});
