// Table grammar for thin-pool / thin targets: the params of each table line round-trip through
// format/parse, the kernel's echo of them parses (feature group in any order and case), and
// lines and inputs that must be rejected are, with ParseError / InvalidArgumentError.
import test from 'ava';
import { InvalidArgumentError, ParseError } from '../../src/errors.js';
import {
  formatPoolTable,
  formatThinTable,
  parsePoolTable,
  parseThinTable,
  type PoolTable,
  type PoolTableInput,
  type ThinTable,
} from '../../src/thin/status.js';
import { dataBlocks, sectors } from '../../src/thin/units.js';

// ---------------------------------------------------------------------------------------------
// thin-pool table

const allOff = {
  skipBlockZeroing: false,
  ignoreDiscard: false,
  noDiscardPassdown: false,
  readOnly: false,
  errorIfNoSpace: false,
};

const poolTables: [table: PoolTable, text: string][] = [
  [
    {
      metadataDev: '253:0',
      dataDev: '253:1',
      dataBlockSize: sectors(128),
      lowWaterMark: dataBlocks(0),
      features: allOff,
    },
    '253:0 253:1 128 0',
  ],
  [
    {
      metadataDev: '/dev/loop0',
      dataDev: '/dev/loop1',
      dataBlockSize: sectors(2097152),
      lowWaterMark: dataBlocks(2n ** 60n),
      features: { ...allOff, skipBlockZeroing: true },
    },
    `/dev/loop0 /dev/loop1 2097152 ${2n ** 60n} 1 skip_block_zeroing`,
  ],
  [
    {
      metadataDev: '7:0',
      dataDev: '7:1',
      dataBlockSize: sectors(1024),
      lowWaterMark: dataBlocks(32),
      features: { ...allOff, noDiscardPassdown: true, errorIfNoSpace: true },
    },
    '7:0 7:1 1024 32 2 no_discard_passdown error_if_no_space',
  ],
  [
    {
      metadataDev: '7:0',
      dataDev: '7:1',
      dataBlockSize: sectors(256),
      lowWaterMark: dataBlocks(1),
      features: {
        skipBlockZeroing: true,
        ignoreDiscard: true,
        noDiscardPassdown: false,
        readOnly: true,
        errorIfNoSpace: true,
      },
    },
    '7:0 7:1 256 1 4 skip_block_zeroing ignore_discard read_only error_if_no_space',
  ],
];

for (const [table, text] of poolTables) {
  test(`pool table round trip ${JSON.stringify(text)}`, (t) => {
    t.is(formatPoolTable(table), text);
    t.deepEqual(parsePoolTable(text), table);
    t.deepEqual(parsePoolTable(formatPoolTable(table)), table);
  });
}

test('pool table: kernel echo with "0" feature count and trailing space', (t) => {
  const p = parsePoolTable('253:0 253:1 128 0 0 ');
  t.deepEqual(p, { metadataDev: '253:0', dataDev: '253:1', dataBlockSize: 128n, lowWaterMark: 0n, features: allOff });
});

test('pool table: features in any order, case-insensitive like parse_pool_features()', (t) => {
  const p = parsePoolTable('253:0 253:1 128 10 3 error_if_no_space SKIP_BLOCK_ZEROING read_only ');
  t.deepEqual(p.features, { ...allOff, errorIfNoSpace: true, skipBlockZeroing: true, readOnly: true });
});

test('pool table: the kernel may echo all five features (emit_flags has no cap)', (t) => {
  const p = parsePoolTable(
    '253:0 253:1 128 10 5 skip_block_zeroing ignore_discard no_discard_passdown read_only error_if_no_space ',
  );
  t.deepEqual(p.features, {
    skipBlockZeroing: true,
    ignoreDiscard: true,
    noDiscardPassdown: true,
    readOnly: true,
    errorIfNoSpace: true,
  });
});

test('pool table: format with features omitted or partial', (t) => {
  const base = { metadataDev: 'm', dataDev: 'd', dataBlockSize: sectors(128), lowWaterMark: dataBlocks(5) };
  t.is(formatPoolTable(base), 'm d 128 5');
  t.is(formatPoolTable({ ...base, features: { readOnly: true } }), 'm d 128 5 1 read_only');
  t.is(formatPoolTable({ ...base, features: { readOnly: false } }), 'm d 128 5');
});

const badPoolTables: [line: string, why: RegExp][] = [
  ['', /got 0 fields/],
  ['253:0 253:1 128', /got 3 fields/],
  ['253:0 253:1 x 0', /data block size "x"/],
  ['253:0 253:1 64 0', /data block size 64 is not a multiple of 128/],
  ['253:0 253:1 200 0', /data block size 200/],
  ['253:0 253:1 2097280 0', /data block size 2097280/],
  ['253:0 253:1 0 0', /data block size 0/],
  ['253:0 253:1 128 -1', /low water mark "-1"/],
  ['253:0 253:1 128 0 x', /feature count "x"/],
  ['253:0 253:1 128 0 1', /feature count 1 does not match the 0/],
  ['253:0 253:1 128 0 1 skip_block_zeroing read_only', /feature count 1 does not match the 2/],
  ['253:0 253:1 128 0 2 skip_block_zeroing', /feature count 2 does not match the 1/],
  ['253:0 253:1 128 0 1 zero_blocks', /unknown feature "zero_blocks"/],
  ['253:0 253:1 128 0 2 read_only discard_passdown', /unknown feature "discard_passdown"/],
  ['253:0 253:1 128 0 1 s\u212Aip_block_zeroing', /unknown feature/], // Kelvin sign: strcasecmp folds ASCII only
];

for (const [line, why] of badPoolTables) {
  test(`pool table rejects ${JSON.stringify(line)}`, (t) => {
    const e = t.throws(() => parsePoolTable(line), { instanceOf: ParseError, message: why });
    t.is(e?.input, line);
  });
}

const goodBase: PoolTableInput = {
  metadataDev: '253:0',
  dataDev: '253:1',
  dataBlockSize: sectors(128),
  lowWaterMark: dataBlocks(0),
};

const badPoolInputs: [name: string, input: PoolTableInput, argument: string][] = [
  ['block size below 128', { ...goodBase, dataBlockSize: sectors(64) }, 'dataBlockSize'],
  ['block size not a multiple of 128', { ...goodBase, dataBlockSize: sectors(192) }, 'dataBlockSize'],
  ['block size above 2097152', { ...goodBase, dataBlockSize: sectors(2097152 + 128) }, 'dataBlockSize'],
  ['block size 0', { ...goodBase, dataBlockSize: sectors(0) }, 'dataBlockSize'],
  [
    'block size a fraction',
    { ...goodBase, dataBlockSize: 128.5 as unknown as PoolTableInput['dataBlockSize'] },
    'dataBlockSize',
  ],
  ['negative low water mark', { ...goodBase, lowWaterMark: -1n as PoolTableInput['lowWaterMark'] }, 'lowWaterMark'],
  ['empty metadata dev', { ...goodBase, metadataDev: '' }, 'metadataDev'],
  ['metadata dev with a space', { ...goodBase, metadataDev: '/dev/my disk' }, 'metadataDev'],
  ['data dev with a tab', { ...goodBase, dataDev: '/dev/a\tb' }, 'dataDev'],
  ['empty data dev', { ...goodBase, dataDev: '' }, 'dataDev'],
  [
    'unknown feature key',
    { ...goodBase, features: { zeroBlocks: true } as Partial<PoolTable['features']> },
    'features.zeroBlocks',
  ],
  ['non-boolean feature', { ...goodBase, features: { readOnly: 'yes' as unknown as boolean } }, 'features.readOnly'],
  [
    'five features (the kernel takes at most 4)',
    {
      ...goodBase,
      features: {
        skipBlockZeroing: true,
        ignoreDiscard: true,
        noDiscardPassdown: true,
        readOnly: true,
        errorIfNoSpace: true,
      },
    },
    'features',
  ],
];

for (const [name, input, argument] of badPoolInputs) {
  test(`formatPoolTable rejects ${name}`, (t) => {
    const e = t.throws(() => formatPoolTable(input), { instanceOf: InvalidArgumentError });
    t.is(e?.argument, argument);
    t.is(e?.code, 'ERR_DM_INVALID_ARGUMENT');
  });
}

// ---------------------------------------------------------------------------------------------
// thin table

const thinTables: [table: ThinTable, text: string][] = [
  [{ poolDev: '253:2', deviceId: 0 }, '253:2 0'],
  [{ poolDev: '/dev/mapper/pool', deviceId: 2 ** 24 - 1 }, '/dev/mapper/pool 16777215'],
  [{ poolDev: '253:2', deviceId: 7, externalOriginDev: '7:3' }, '253:2 7 7:3'],
];

for (const [table, text] of thinTables) {
  test(`thin table round trip ${JSON.stringify(text)}`, (t) => {
    t.is(formatThinTable(table), text);
    t.deepEqual(parseThinTable(text), table);
    t.deepEqual(parseThinTable(`${text} `), table, 'trailing space');
  });
}

test('thin table: no externalOriginDev key when absent', (t) => {
  t.false('externalOriginDev' in parseThinTable('253:2 1'));
});

const badThinTables: [line: string, why: RegExp][] = [
  ['', /got 0 fields/],
  ['253:2', /got 1 fields/],
  ['253:2 1 7:3 extra', /got 4 fields/],
  ['253:2 x', /device id "x"/],
  ['253:2 -1', /device id "-1"/],
  ['253:2 16777216', /above the 24-bit maximum/],
];

for (const [line, why] of badThinTables) {
  test(`thin table rejects ${JSON.stringify(line)}`, (t) => {
    const e = t.throws(() => parseThinTable(line), { instanceOf: ParseError, message: why });
    t.is(e?.input, line);
  });
}

const badThinInputs: [name: string, input: ThinTable, argument: string][] = [
  ['id -1', { poolDev: 'p', deviceId: -1 }, 'deviceId'],
  ['id 2^24', { poolDev: 'p', deviceId: 2 ** 24 }, 'deviceId'],
  ['id 1.5', { poolDev: 'p', deviceId: 1.5 }, 'deviceId'],
  ['id NaN', { poolDev: 'p', deviceId: Number.NaN }, 'deviceId'],
  ['empty pool dev', { poolDev: '', deviceId: 1 }, 'poolDev'],
  ['pool dev with a space', { poolDev: 'a b', deviceId: 1 }, 'poolDev'],
  ['empty origin', { poolDev: 'p', deviceId: 1, externalOriginDev: '' }, 'externalOriginDev'],
  ['origin with a space', { poolDev: 'p', deviceId: 1, externalOriginDev: 'a b' }, 'externalOriginDev'],
];

for (const [name, input, argument] of badThinInputs) {
  test(`formatThinTable rejects ${name}`, (t) => {
    const e = t.throws(() => formatThinTable(input), { instanceOf: InvalidArgumentError });
    t.is(e?.argument, argument);
  });
}
