// Property-based fuzzing of the validators of caller input: driver options (resolveOptions),
// layer ids (assertLayerId: an accepted id cannot name a path outside <home>/mnt), mount labels
// (assertMountLabel) and sizes (parseSize, Docker's grammar). Values of any type must give a
// value or InvalidArgumentError, never a TypeError / RangeError / SyntaxError, within the
// harness's budget (helpers/fuzz-harness.ts), and what is accepted must hold the invariants checked.
//
// FUZZ_SCALE=<factor> multiplies every property's run count (e.g. 10 for a long soak).
import test from 'ava';
import fc from 'fast-check';
import { ok as assertOk, strictEqual } from 'node:assert/strict';
import { join, relative, resolve, sep } from 'node:path';
import { assertLayerId, assertMountLabel, resolveOptions, type DriverOptions } from '../../src/driver/options.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { parseSize } from '../../src/thin/units.js';
import { anyValue, attempt, check, failure, mostly, runs, value } from './helpers/fuzz-harness.js';

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
      home: fc.constantFrom('/var/lib/dm', '/a/b/', '/a//', '/tmp/dm home'),
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
    assertOk(r.home.length > 1 && !r.home.endsWith('/')); // '/' itself is never a home
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
