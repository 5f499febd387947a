// Host tests of the dm_ioctl header in src/ioctl/codec.ts: writeDmIoctlHeader / readDmIoctlHeader
// round trips, defaults that clear a stale buffer, the name, uuid and target type limits counted
// in UTF-8 bytes, typed rejection of every bad field before anything is written, and ParseError on
// a short or unterminated header; plus the abi.ts helpers the header uses (dev numbers, versions).
import test from 'ava';
import { DM_COMMANDS, DM_FLAGS, DM_IOCTL_SIZE, decodeDev, encodeDev, versionAtLeast } from '../../src/ioctl/abi.js';
import {
  readDmIoctlHeader,
  validateDeviceName,
  validateTargetType,
  validateUuid,
  writeDmIoctlHeader,
  type DmIoctlHeaderInput,
} from '../../src/ioctl/codec.js';
import { invalid, parseError } from './helpers/typed-errors.js';

// ---------------------------------------------------------------------------------------------
// struct dm_ioctl
// ---------------------------------------------------------------------------------------------

const fullHeader: DmIoctlHeaderInput = {
  version: [4, 37, 1],
  dataSize: 1024,
  dataStart: 320,
  targetCount: 3,
  openCount: -2,
  flags: DM_FLAGS.DM_SUSPEND_FLAG | DM_FLAGS.DM_UUID_FLAG,
  eventNr: 0xfedcba98,
  dev: 0x1234_5678_9abc_def0n,
  name: 'pool-ü',
  uuid: 'LVM-abc',
};

test('dm_ioctl header round trip, with padding and string tails zeroed', (t) => {
  const buf = Buffer.alloc(1024, 0xff);
  writeDmIoctlHeader(buf, fullHeader);
  t.deepEqual(readDmIoctlHeader(buf), fullHeader);
  t.is(buf.readUInt32LE(36), 0, 'padding');
  t.is(buf.readUInt32LE(24), 0xfffffffe, 'open_count at 24');
  t.is(buf.readBigUInt64LE(40), 0x1234_5678_9abc_def0n, 'dev at 40');
  t.true(
    buf.subarray(48 + Buffer.byteLength('pool-ü'), 176).every((b) => b === 0),
    'name tail',
  );
  t.true(
    buf.subarray(176 + 7, 312).every((b) => b === 0),
    'uuid tail and data[7]',
  );
  t.is(buf[312], 0xff, 'nothing past the header is touched');
});

test('dm_ioctl header defaults clear a stale buffer', (t) => {
  const buf = Buffer.alloc(512, 0x77);
  writeDmIoctlHeader(buf, { version: DM_COMMANDS.DM_VERSION.minVersion, dataSize: 512, dataStart: DM_IOCTL_SIZE });
  const h = readDmIoctlHeader(buf);
  t.deepEqual(h, {
    version: [4, 0, 0],
    dataSize: 512,
    dataStart: 312,
    targetCount: 0,
    openCount: 0,
    flags: 0,
    eventNr: 0,
    dev: 0n,
    name: '',
    uuid: '',
  });
});

test('device name limits are counted in UTF-8 bytes', (t) => {
  t.is(validateDeviceName('a'.repeat(127)), 127);
  invalid(t, () => validateDeviceName('a'.repeat(128)), 'name');
  // 64 two-byte characters: 64 UTF-16 units but 128 bytes, one too many.
  invalid(t, () => validateDeviceName('é'.repeat(64)), 'name');
  t.is(validateDeviceName(`${'é'.repeat(63)}a`), 127);
  invalid(t, () => validateDeviceName(''), 'name');
  invalid(t, () => validateDeviceName('a/b'), 'name');
  invalid(t, () => validateDeviceName('a\0b'), 'name');
  invalid(t, () => validateDeviceName('.'), 'name');
  invalid(t, () => validateDeviceName('..'), 'name');
  invalid(t, () => validateDeviceName('a\uD800b'), 'name');
  t.is(validateDeviceName('a\uD83D\uDE00'), 5, 'a surrogate pair is one 4-byte character');
  invalid(t, () => validateDeviceName('control'), 'name');
  invalid(t, () => validateDeviceName('x'.repeat(200), 'newName'), 'newName');
  t.is(validateDeviceName('...'), 3);
});

test('uuid and target type limits are counted in UTF-8 bytes', (t) => {
  t.is(validateUuid('u'.repeat(128)), 128);
  t.is(validateUuid(''), 0);
  invalid(t, () => validateUuid('u'.repeat(129)), 'uuid');
  invalid(t, () => validateUuid('€'.repeat(43)), 'uuid'); // 129 bytes
  invalid(t, () => validateUuid('a\0'), 'uuid');
  t.is(validateTargetType('t'.repeat(15)), 15);
  invalid(t, () => validateTargetType('t'.repeat(16)), 'targetType');
  invalid(t, () => validateTargetType('ü'.repeat(8)), 'targetType'); // 16 bytes
  invalid(t, () => validateTargetType(''), 'targetType');
  invalid(t, () => validateTargetType('th\0in'), 'targetType');
});

test('writeDmIoctlHeader rejects bad fields before writing anything', (t) => {
  const buf = Buffer.alloc(1024, 0x5a);
  const pristine = Buffer.from(buf);
  const bad: Array<[Partial<DmIoctlHeaderInput>, string]> = [
    [{ name: 'n'.repeat(128) }, 'name'],
    [{ name: 'a/b' }, 'name'],
    [{ uuid: 'u'.repeat(129) }, 'uuid'],
    [{ uuid: 'a\0b' }, 'uuid'],
    [{ version: [4, 0] }, 'version'],
    [{ version: [4, -1, 0] }, 'version'],
    [{ dataSize: 2048 }, 'dataSize'], // larger than the buffer
    [{ dataSize: 311 }, 'dataSize'],
    [{ dataStart: 300 }, 'dataStart'], // overlaps the header
    [{ dataStart: 316 }, 'dataStart'], // misaligned
    [{ dataStart: 1032 }, 'dataStart'], // past data_size
    [{ flags: -1 }, 'flags'],
    [{ flags: 2 ** 32 }, 'flags'],
    [{ eventNr: 1.5 }, 'eventNr'],
    [{ targetCount: -1 }, 'targetCount'],
    [{ openCount: 2 ** 31 }, 'openCount'],
    [{ dev: -1n }, 'dev'],
    [{ dev: 1n << 64n }, 'dev'],
  ];
  for (const [patch, argument] of bad) {
    invalid(t, () => writeDmIoctlHeader(buf, { ...fullHeader, ...patch }), argument);
  }
  t.deepEqual(buf, pristine);
  invalid(t, () => writeDmIoctlHeader(Buffer.alloc(200), { ...fullHeader, dataSize: 200 }), 'buffer');
});

test('readDmIoctlHeader refuses a short buffer or an unterminated name', (t) => {
  parseError(t, () => readDmIoctlHeader(Buffer.alloc(311)));
  const buf = Buffer.alloc(312);
  writeDmIoctlHeader(buf, { version: [4, 0, 0], dataSize: 312, dataStart: 312 });
  buf.fill(0x41, 48, 176); // name with no NUL in its 128 bytes
  parseError(t, () => readDmIoctlHeader(buf), /dm_ioctl\.name/);
  buf.fill(0, 48, 176);
  buf.fill(0x42, 176, 305); // uuid with no NUL in its 129 bytes
  parseError(t, () => readDmIoctlHeader(buf), /dm_ioctl\.uuid/);
});

// ---------------------------------------------------------------------------------------------
// abi.ts helpers
// ---------------------------------------------------------------------------------------------

test('encodeDev/decodeDev follow huge_encode_dev and reject out-of-range numbers', (t) => {
  t.is(encodeDev(253, 0), 0xfd00n);
  t.is(encodeDev(253, 256), 0x10fd00n); // minor bits 8-19 go to 20-31
  t.is(encodeDev(4095, 0xfffff), 0xffff_ffffn);
  t.deepEqual(decodeDev(0x10fd00n), { major: 253, minor: 256 });
  t.deepEqual(decodeDev(0xffff_ffffn), { major: 4095, minor: 0xfffff });
  invalid(t, () => encodeDev(4096, 0), 'major');
  invalid(t, () => encodeDev(1, 1 << 20), 'minor');
  invalid(t, () => encodeDev(-1, 0), 'major');
  invalid(t, () => decodeDev(-1n), 'dev');
});

test('versionAtLeast compares minor and patchlevel, and never across majors', (t) => {
  t.true(versionAtLeast([4, 47, 0], [4, 45, 0]));
  t.true(versionAtLeast([4, 45, 0], [4, 45, 0]));
  t.false(versionAtLeast([4, 44, 9], [4, 45, 0]));
  t.true(versionAtLeast([4, 36, 2], [4, 36, 1]));
  t.false(versionAtLeast([4, 36, 0], [4, 36, 1]));
  t.false(versionAtLeast([5, 0, 0], [4, 0, 0]));
  t.false(versionAtLeast([], [4, 0, 0]));
  t.deepEqual(DM_COMMANDS.DM_DEV_ARM_POLL.minVersion, [4, 36, 0]);
  t.deepEqual(DM_COMMANDS.DM_GET_TARGET_VERSION.minVersion, [4, 41, 0]);
});
