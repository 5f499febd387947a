// Host tests of src/ioctl/codec.ts: round trips of every struct, decoding of kernel payloads
// built byte by byte here (in the layouts dm-ioctl.c writes), typed rejection of every length
// limit, and ParseError (never RangeError, never a hang) on malformed payloads.
import test, { type ExecutionContext } from 'ava';
import { InvalidArgumentError, ParseError } from '../../src/errors.js';
import {
  DM_COMMANDS,
  DM_FLAGS,
  DM_IOCTL_SIZE,
  DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID,
  DM_NAME_LIST_FLAG_HAS_UUID,
  decodeDev,
  encodeDev,
  versionAtLeast,
} from '../../src/ioctl/abi.js';
import { LO_FLAGS } from '../../src/ioctl/loop-abi.js';
import {
  decodeLoopConfig,
  decodeLoopInfo64,
  decodeNameList,
  decodeStringPayload,
  decodeTargetDeps,
  decodeTargetSpecs,
  decodeTargetVersions,
  encodeLoopConfig,
  encodeLoopInfo64,
  encodeStringPayload,
  encodeTargetMessage,
  encodeTargets,
  readDmIoctlHeader,
  targetMessageSize,
  targetsSize,
  truncateUtf8,
  validateDeviceName,
  validateTargetType,
  validateUuid,
  writeDmIoctlHeader,
  type DmIoctlHeaderInput,
  type LoopInfo64,
  type TargetSpec,
} from '../../src/ioctl/codec.js';

function invalid(t: ExecutionContext, fn: () => unknown, argument: string): void {
  const err = t.throws(fn, { instanceOf: InvalidArgumentError });
  t.is(err?.argument, argument, err?.message);
  t.is(err?.code, 'ERR_DM_INVALID_ARGUMENT');
}

function parseError(t: ExecutionContext, fn: () => unknown, message?: RegExp): void {
  const err = t.throws(fn, { instanceOf: ParseError });
  t.is(err?.code, 'ERR_DM_PARSE');
  if (message) t.regex(err?.message ?? '', message);
}

const align8 = (n: number) => Math.ceil(n / 8) * 8;

// ---------------------------------------------------------------------------------------------
// Hand-built kernel payloads (byte layouts from include/uapi/linux/dm-ioctl.h)
// ---------------------------------------------------------------------------------------------

/** Writes a NUL-terminated ASCII/UTF-8 string; returns the offset after the NUL. */
function putString(buf: Buffer, at: number, s: string): number {
  const n = buf.write(s, at, 'utf8');
  buf[at + n] = 0;
  return at + n + 1;
}

interface NameRecord {
  dev: bigint;
  name: string;
  eventNr?: number;
  flags?: number;
  uuid?: string;
}

/**
 * A DM_LIST_DEVICES payload as list_devices() writes it. `style`:
 * 'pre437' - old kernels: next = align8(16 + strlen + 1) (they stepped past sizeof, 16);
 * '437'    - event_nr after the aligned name, the flags word left as found;
 * '445'    - event_nr, flags and, with HAS_UUID, the uuid.
 * Returns the buffer and the data area [start, end).
 */
function nameListPayload(
  records: NameRecord[],
  style: 'pre437' | '437' | '445',
  fill = 0,
): { buf: Buffer; start: number; end: number } {
  const start = 16; // a nonzero data_start, to catch offsets taken from the buffer's start
  const buf = Buffer.alloc(4096, fill);
  let at = start;
  let prev = -1;
  for (const r of records) {
    if (prev >= 0) buf.writeUInt32LE(at - prev, prev + 8);
    buf.writeBigUInt64LE(r.dev, at);
    buf.writeUInt32LE(0, at + 8);
    const nameEnd = putString(buf, at + 12, r.name);
    prev = at;
    if (style === 'pre437') {
      at = start + align8(at - start + 16 + Buffer.byteLength(r.name) + 1);
      continue;
    }
    const tail = start + align8(nameEnd - start);
    buf.fill(0, nameEnd, tail);
    buf.writeUInt32LE(r.eventNr ?? 0, tail);
    if (style === '445') buf.writeUInt32LE(r.flags ?? 0, tail + 4);
    else if (r.flags !== undefined) buf.writeUInt32LE(r.flags, tail + 4); // stale word
    at = tail + 8;
    if (style === '445' && r.uuid !== undefined) at = start + align8(putString(buf, at, r.uuid) - start);
  }
  return { buf, start, end: at };
}

/** A DM_TABLE_STATUS payload as retrieve_status() writes it: `next` from the data area. */
function statusPayload(specs: Array<{ start: bigint; length: bigint; type: string; params: string; status?: number }>) {
  const start = DM_IOCTL_SIZE;
  const buf = Buffer.alloc(4096, 0xaa); // stale bytes everywhere the kernel does not write
  let off = 0;
  let used = 0;
  for (const s of specs) {
    const at = start + off;
    buf.writeBigUInt64LE(s.start, at);
    buf.writeBigUInt64LE(s.length, at + 8);
    buf.writeInt32LE(s.status ?? 0, at + 16);
    buf.fill(0, at + 24, at + 39); // strncpy(..., 15) pads with NULs but leaves byte 15 alone
    buf.write(s.type, at + 24, 'utf8');
    const strEnd = putString(buf, at + 40, s.params) - start;
    used = strEnd;
    off = align8(strEnd);
    buf.writeUInt32LE(off, at + 20);
  }
  // data_size covers only up to the last string's NUL, not the padding after it.
  return { buf, start, end: start + used };
}

function versionsPayload(records: Array<{ name: string; version: [number, number, number] }>) {
  const start = 24;
  const buf = Buffer.alloc(2048, 0x55);
  let at = start;
  let prev = -1;
  for (const r of records) {
    if (prev >= 0) buf.writeUInt32LE(at - prev, prev);
    buf.writeUInt32LE(0, at);
    for (const [i, v] of r.version.entries()) buf.writeUInt32LE(v, at + 4 + i * 4);
    putString(buf, at + 16, r.name);
    prev = at;
    at = start + align8(at - start + 16 + Buffer.byteLength(r.name) + 1);
  }
  // list_versions() sizes data with slack (ALIGN_MASK per record): end past the last record.
  return { buf, start, end: at + 7 };
}

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
  t.deepEqual(readDmIoctlHeader(buf), {
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
  });
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
// dm_target_spec
// ---------------------------------------------------------------------------------------------

const table: TargetSpec[] = [
  { start: 0n, length: 2048n, type: 'linear', params: '7:0 2048' }, // 8 bytes + NUL -> 16
  { start: 2048n, length: 1n << 40n, type: 'thin-pool', params: '7:1 7:2 128 0' }, // 14 + NUL -> 16
  { start: 2048n + (1n << 40n), length: 8n, type: 'error', params: '' }, // NUL -> 8
  { start: 2056n + (1n << 40n), length: 8n, type: 'zero', params: '1234567' }, // 7 + NUL -> 8
];

test('encodeTargets lays out specs with next relative to the current spec', (t) => {
  const buf = Buffer.alloc(1024, 0xee);
  const size = encodeTargets(buf, 312, table);
  t.is(size, targetsSize(table));
  t.is(size, 40 + 16 + (40 + 16) + (40 + 8) + (40 + 8));
  let at = 312;
  for (const [i, spec] of table.entries()) {
    const recordSize = 40 + align8(Buffer.byteLength(spec.params) + 1);
    t.is(buf.readBigUInt64LE(at), spec.start, `start ${i}`);
    t.is(buf.readBigUInt64LE(at + 8), spec.length, `length ${i}`);
    t.is(buf.readInt32LE(at + 16), 0, `status ${i}`);
    t.is(buf.readUInt32LE(at + 20), recordSize, `next ${i}`);
    t.is(buf.toString('utf8', at + 24, at + 24 + spec.type.length), spec.type);
    t.true(
      buf.subarray(at + 24 + spec.type.length, at + 40).every((b) => b === 0),
      `type tail ${i}`,
    );
    t.is(buf.toString('utf8', at + 40, at + 40 + Buffer.byteLength(spec.params)), spec.params);
    t.true(
      buf.subarray(at + 40 + Buffer.byteLength(spec.params), at + recordSize).every((b) => b === 0),
      `NUL and padding ${i}`,
    );
    at += recordSize;
  }
  t.is(buf[at], 0xee, 'nothing written past the table');
});

test('encodeTargets output, re-based to data-area offsets, decodes back', (t) => {
  const buf = Buffer.alloc(1024);
  const size = encodeTargets(buf, 312, table);
  // Turn load-style next (from the spec) into status-style next (from the data area).
  let at = 312;
  for (let i = 0; i < table.length; i++) {
    const next = buf.readUInt32LE(at + 20);
    buf.writeUInt32LE(at + next - 312, at + 20);
    at += next;
  }
  const decoded = decodeTargetSpecs(buf, 312, 312 + size, table.length);
  t.deepEqual(
    decoded,
    table.map((s) => ({ ...s, status: 0 })),
  );
});

test('encodeTargets rejects bad tables with the offending argument', (t) => {
  const buf = Buffer.alloc(4096);
  const one = (patch: Partial<TargetSpec>) => [{ ...table[0]!, ...patch }];
  invalid(t, () => encodeTargets(buf, 312, []), 'targets');
  invalid(t, () => encodeTargets(buf, 312, one({ type: 'x'.repeat(16) })), 'targetType');
  invalid(t, () => encodeTargets(buf, 312, one({ type: '' })), 'targetType');
  invalid(t, () => encodeTargets(buf, 312, one({ params: 'a\0b' })), 'params');
  invalid(t, () => encodeTargets(buf, 312, one({ length: 0n })), 'targets[0].length');
  invalid(t, () => encodeTargets(buf, 312, one({ length: -5n })), 'targets[0].length');
  invalid(t, () => encodeTargets(buf, 312, one({ start: 8n })), 'targets[0].start');
  invalid(t, () => encodeTargets(buf, 312, [table[0]!, { ...table[1]!, start: 4096n }]), 'targets[1].start');
  invalid(t, () => encodeTargets(buf, 316, table), 'offset');
  invalid(t, () => encodeTargets(Buffer.alloc(400), 312, table), 'buffer');
  invalid(t, () => targetsSize(one({ params: 'p'.repeat(10), type: 'ü'.repeat(8) })), 'targetType');
});

test('decodeTargetSpecs reads DM_TABLE_STATUS output', (t) => {
  const specs = [
    {
      start: 0n,
      length: 409600n,
      type: 'thin-pool',
      params: '0 1/1024 0/3200 - rw discard_passdown queue_if_no_space - 1024 ',
      status: 0,
    },
    { start: 409600n, length: 8n, type: 'abcdefghijklmno', params: '', status: -1 }, // 15-char type
  ];
  const { buf, start, end } = statusPayload(specs);
  // Byte 16 of the 15-character type is stale (0xaa): strncpy(..., 15) never writes it.
  const second = start + buf.readUInt32LE(start + 20);
  t.is(buf[second + 24 + 15], 0xaa);
  t.not(end % 8, 0, 'data_size ends right after the last NUL');
  t.deepEqual(decodeTargetSpecs(buf, start, end, 2), specs);
  t.deepEqual(decodeTargetSpecs(buf, start, end, 0), []);
  t.deepEqual(decodeTargetSpecs(buf, start, start, 0), []);
});

test('decodeTargetSpecs refuses malformed payloads with ParseError', (t) => {
  const specs = [
    { start: 0n, length: 8n, type: 'linear', params: '7:0 0' },
    { start: 8n, length: 8n, type: 'linear', params: '7:0 8' },
    { start: 16n, length: 8n, type: 'linear', params: '7:0 16' },
  ];
  const good = () => statusPayload(specs);
  t.is(decodeTargetSpecs(good().buf, good().start, good().end, 3).length, 3);

  // next pointing back at the first spec: would loop forever if followed blindly.
  let p = good();
  p.buf.writeUInt32LE(0, p.start + 20);
  parseError(t, () => decodeTargetSpecs(p.buf, p.start, p.end, 3), /points back/);
  // next pointing into the spec's own parameter string.
  p = good();
  p.buf.writeUInt32LE(41, p.start + 20);
  parseError(t, () => decodeTargetSpecs(p.buf, p.start, p.end, 3));
  // next past the end of the payload.
  p = good();
  p.buf.writeUInt32LE(0xffff_fff0, p.start + 20);
  parseError(t, () => decodeTargetSpecs(p.buf, p.start, p.end, 3), /runs past/);
  // more targets than the payload can hold, including an absurd count.
  p = good();
  parseError(t, () => decodeTargetSpecs(p.buf, p.start, p.end, 4));
  parseError(t, () => decodeTargetSpecs(p.buf, p.start, p.end, 0xffff_ffff), /cannot fit/);
  parseError(t, () => decodeTargetSpecs(p.buf, p.start, p.end, -1));
  // a parameter string with no NUL before data_size.
  p = good();
  parseError(t, () => decodeTargetSpecs(p.buf, p.start, p.end - 1, 3), /no NUL/);
  // an empty target type.
  p = good();
  p.buf[p.start + 24] = 0;
  parseError(t, () => decodeTargetSpecs(p.buf, p.start, p.end, 3), /empty target type/);
  // a payload range outside the buffer (data_size larger than what came back).
  parseError(t, () => decodeTargetSpecs(p.buf, p.start, p.buf.length + 1, 1), /payload range/);
  parseError(t, () => decodeTargetSpecs(p.buf, 500, 400, 1), /payload range/);
});

// ---------------------------------------------------------------------------------------------
// dm_name_list
// ---------------------------------------------------------------------------------------------

test('decodeNameList reads 4.45+ records with event_nr, flags and uuid', (t) => {
  const records: NameRecord[] = [
    { dev: encodeDev(253, 0), name: 'pool', eventNr: 7, flags: DM_NAME_LIST_FLAG_HAS_UUID, uuid: 'LVM-0123456789' },
    { dev: encodeDev(253, 1), name: 'thin1-with-a-longer-name', eventNr: 0, flags: DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID },
    { dev: encodeDev(253, 300), name: 'x', eventNr: 0xffff_ffff, flags: DM_NAME_LIST_FLAG_HAS_UUID, uuid: 'u' },
  ];
  const { buf, start, end } = nameListPayload(records, '445', 0xcc);
  const expected = [
    { dev: encodeDev(253, 0), name: 'pool', eventNr: 7, uuid: 'LVM-0123456789' },
    { dev: encodeDev(253, 1), name: 'thin1-with-a-longer-name', eventNr: 0, uuid: '' },
    { dev: encodeDev(253, 300), name: 'x', eventNr: 0xffff_ffff, uuid: 'u' },
  ];
  t.deepEqual(decodeNameList(buf, start, end, { interfaceVersion: [4, 47, 0] }), expected);
  t.deepEqual(decodeNameList(buf, start, end), expected, 'the length heuristic agrees');
  t.deepEqual(decodeDev(decodeNameList(buf, start, end)[2]!.dev), { major: 253, minor: 300 });
});

test('decodeNameList reads 4.45+ records listed without DM_UUID_FLAG', (t) => {
  const { buf, start, end } = nameListPayload(
    [
      { dev: 0xfd00n, name: 'a', eventNr: 3 },
      { dev: 0xfd01n, name: 'bb', eventNr: 4 },
    ],
    '445',
  );
  t.deepEqual(decodeNameList(buf, start, end, { interfaceVersion: [4, 45, 0] }), [
    { dev: 0xfd00n, name: 'a', eventNr: 3 },
    { dev: 0xfd01n, name: 'bb', eventNr: 4 },
  ]);
});

test('decodeNameList reads 4.37-4.44 records and ignores the unwritten flags word', (t) => {
  // The kernel leaves the word after event_nr as the caller's buffer had it: here a stale 1,
  // which on a 4.45 kernel would mean HAS_UUID.
  const { buf, start, end } = nameListPayload(
    [
      { dev: 0xfd00n, name: 'pool', eventNr: 9, flags: DM_NAME_LIST_FLAG_HAS_UUID },
      { dev: 0xfd01n, name: 'thin', eventNr: 10, flags: DM_NAME_LIST_FLAG_HAS_UUID },
    ],
    '437',
  );
  const expected = [
    { dev: 0xfd00n, name: 'pool', eventNr: 9 },
    { dev: 0xfd01n, name: 'thin', eventNr: 10 },
  ];
  t.deepEqual(decodeNameList(buf, start, end, { interfaceVersion: [4, 40, 0] }), expected);
  // Without the version: the records hold exactly event_nr + flags, no room for a uuid.
  t.deepEqual(decodeNameList(buf, start, end), expected);
});

test('decodeNameList reads pre-4.37 records, which have no event_nr', (t) => {
  const names = ['abc', 'thin-volume-0001', 'q'];
  const { buf, start, end } = nameListPayload(
    names.map((name, i) => ({ dev: BigInt(0xfd00 + i), name })),
    'pre437',
    0x11,
  );
  t.deepEqual(
    decodeNameList(buf, start, end, { interfaceVersion: [4, 35, 0] }),
    names.map((name, i) => ({ dev: BigInt(0xfd00 + i), name })),
  );
  // 'abc' has align8(16+4)=24 bytes: room for a tail after align8(12+4)=16, so the heuristic
  // (no version) would read stale bytes as event_nr: what interfaceVersion is there for.
  t.is(decodeNameList(buf, start, end)[0]!.eventNr, 0x11111111);
});

test('decodeNameList: an empty list is an empty payload or a first record with dev 0', (t) => {
  const buf = Buffer.alloc(64, 0x33);
  t.deepEqual(decodeNameList(buf, 16, 16), []);
  buf.writeBigUInt64LE(0n, 16); // list_devices(): "nl->dev = 0; /* Flags no data */"
  t.deepEqual(decodeNameList(buf, 16, 32), []);
  t.deepEqual(decodeNameList(buf, 16, 24), []);
  parseError(t, () => decodeNameList(buf, 16, 20), /cannot hold a record/);
});

test('decodeNameList refuses malformed payloads with ParseError', (t) => {
  const records: NameRecord[] = [
    { dev: 0xfd00n, name: 'pool', eventNr: 1, flags: DM_NAME_LIST_FLAG_HAS_UUID, uuid: 'LVM-x' },
    { dev: 0xfd01n, name: 'thin', eventNr: 2, flags: DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID },
  ];
  const v = { interfaceVersion: [4, 47, 0] };
  const good = () => nameListPayload(records, '445');
  const g = good();
  t.is(decodeNameList(g.buf, g.start, g.end, v).length, 2);

  // next smaller than a record (would revisit or overlap).
  let p = good();
  p.buf.writeUInt32LE(8, p.start + 8);
  parseError(t, () => decodeNameList(p.buf, p.start, p.end, v), /not a forward/);
  // next not 8-aligned.
  p = good();
  p.buf.writeUInt32LE(33, p.start + 8);
  parseError(t, () => decodeNameList(p.buf, p.start, p.end, v), /not a forward/);
  // next past the end of the payload (also the u32 that would wrap in C).
  p = good();
  p.buf.writeUInt32LE(0xffff_fff8, p.start + 8);
  parseError(t, () => decodeNameList(p.buf, p.start, p.end, v), /not a forward/);
  // a name with no NUL inside its record.
  p = good();
  p.buf.fill(0x41, p.start + 12, p.start + 40);
  parseError(t, () => decodeNameList(p.buf, p.start, p.end, v), /no NUL/);
  // a uuid with no NUL before the payload ends.
  p = good();
  const secondAt = p.start + p.buf.readUInt32LE(p.start + 8);
  p.buf.fill(0x42, p.start + 32, secondAt); // 'pool': event_nr at 24, flags at 28, uuid at 32
  parseError(t, () => decodeNameList(p.buf, p.start, p.end, v), /no NUL/);
  // a 4.45 record that flags a uuid but ends right after the flags word.
  p = nameListPayload([{ dev: 0xfd00n, name: 'pool', eventNr: 1, flags: DM_NAME_LIST_FLAG_HAS_UUID }], '445');
  parseError(t, () => decodeNameList(p.buf, p.start, p.end, v), /no room for one/);
  // a 4.37+ record too short for event_nr and flags.
  p = nameListPayload([{ dev: 0xfd00n, name: 'pool' }], 'pre437');
  parseError(t, () => decodeNameList(p.buf, p.start, p.start + 18, { interfaceVersion: [4, 37, 0] }), /no room/);
  // truncated second record.
  p = good();
  parseError(t, () => decodeNameList(p.buf, p.start, p.start + p.buf.readUInt32LE(p.start + 8) + 4, v));
  parseError(t, () => decodeNameList(p.buf, p.start, p.buf.length + 8), /payload range/);
});

// ---------------------------------------------------------------------------------------------
// dm_target_versions and dm_target_deps
// ---------------------------------------------------------------------------------------------

test('decodeTargetVersions reads DM_LIST_VERSIONS output', (t) => {
  const records: Array<{ name: string; version: [number, number, number] }> = [
    { name: 'thin-pool', version: [1, 23, 0] },
    { name: 'thin', version: [1, 23, 0] },
    { name: 'linear', version: [1, 4, 0] },
    { name: 'abcdefghijklmnopqrstuvwxyz', version: [4294967295, 0, 7] },
  ];
  const { buf, start, end } = versionsPayload(records);
  t.deepEqual(decodeTargetVersions(buf, start, end), records);
  t.deepEqual(decodeTargetVersions(buf, start, start), []);
  const one = versionsPayload([{ name: 'thin-pool', version: [1, 22, 0] }]); // DM_GET_TARGET_VERSION
  t.deepEqual(decodeTargetVersions(one.buf, one.start, one.end), [{ name: 'thin-pool', version: [1, 22, 0] }]);
});

test('decodeTargetVersions refuses malformed payloads with ParseError', (t) => {
  const records: Array<{ name: string; version: [number, number, number] }> = [
    { name: 'striped', version: [1, 6, 0] },
    { name: 'zero', version: [1, 1, 0] },
  ];
  let p = versionsPayload(records);
  p.buf.writeUInt32LE(8, p.start); // next into its own version fields
  parseError(t, () => decodeTargetVersions(p.buf, p.start, p.end));
  p = versionsPayload(records);
  p.buf.writeUInt32LE(16, p.start); // next at its own name: name runs into the next record
  parseError(t, () => decodeTargetVersions(p.buf, p.start, p.end));
  p = versionsPayload(records);
  p.buf.writeUInt32LE(4096, p.start); // past the end
  parseError(t, () => decodeTargetVersions(p.buf, p.start, p.end), /inside the payload/);
  p = versionsPayload(records);
  p.buf.writeUInt32LE(12, p.start); // not aligned
  parseError(t, () => decodeTargetVersions(p.buf, p.start, p.end));
  p = versionsPayload(records);
  p.buf.fill(0x61, p.start + 24 + 16, p.end); // last name without NUL
  parseError(t, () => decodeTargetVersions(p.buf, p.start, p.end), /no NUL/);
  parseError(t, () => decodeTargetVersions(p.buf, p.start, p.start + 10), /runs past/);
});

test('decodeTargetDeps reads DM_TABLE_DEPS output and refuses overflowing counts', (t) => {
  const buf = Buffer.alloc(400, 0x99);
  const start = 312;
  buf.writeUInt32LE(3, start);
  buf.writeUInt32LE(0, start + 4);
  const devs = [encodeDev(7, 0), encodeDev(259, 3), encodeDev(8, 16)];
  for (const [i, d] of devs.entries()) buf.writeBigUInt64LE(d, start + 8 + i * 8);
  t.deepEqual(decodeTargetDeps(buf, start, start + 32), devs);
  parseError(t, () => decodeTargetDeps(buf, start, start + 31), /do not fit/);
  buf.writeUInt32LE(0, start);
  t.deepEqual(decodeTargetDeps(buf, start, start + 8), []);
  buf.writeUInt32LE(0xffff_ffff, start);
  parseError(t, () => decodeTargetDeps(buf, start, start + 88), /do not fit/);
  parseError(t, () => decodeTargetDeps(buf, start, start + 4), /cannot hold/);
  parseError(t, () => decodeTargetDeps(buf, start, 401), /payload range/);
});

// ---------------------------------------------------------------------------------------------
// dm_target_msg and string payloads
// ---------------------------------------------------------------------------------------------

test('encodeTargetMessage writes the sector then the NUL-terminated message', (t) => {
  const buf = Buffer.alloc(512, 0xff);
  const n = encodeTargetMessage(buf, 312, 0n, 'create_thin 0');
  t.is(n, 8 + 13 + 1);
  t.is(n, targetMessageSize('create_thin 0'));
  t.is(buf.readBigUInt64LE(312), 0n);
  t.is(buf.toString('utf8', 320, 333), 'create_thin 0');
  t.is(buf[333], 0);
  t.is(buf[334], 0xff);
  encodeTargetMessage(buf, 320, 0xffff_ffff_ffff_ffffn, 'x');
  t.is(buf.readBigUInt64LE(320), 0xffff_ffff_ffff_ffffn);
  invalid(t, () => encodeTargetMessage(buf, 312, 0n, ''), 'message');
  invalid(t, () => encodeTargetMessage(buf, 312, 0n, 'a\0b'), 'message');
  invalid(t, () => encodeTargetMessage(buf, 312, -1n, 'x'), 'sector');
  invalid(t, () => encodeTargetMessage(buf, 313, 0n, 'x'), 'offset');
  invalid(t, () => encodeTargetMessage(buf, 504, 0n, 'x'.repeat(8)), 'buffer');
});

test('string payloads: rename/geometry input and DM_TARGET_MSG output', (t) => {
  const buf = Buffer.alloc(512, 0xff);
  t.is(encodeStringPayload(buf, 312, 'new-name'), 9);
  t.is(decodeStringPayload(buf, 312, 321), 'new-name');
  t.is(decodeStringPayload(buf, 312, 312), '');
  invalid(t, () => encodeStringPayload(buf, 312, '', 'newName'), 'newName');
  invalid(t, () => encodeStringPayload(buf, 312, 'a\0', 'geometry'), 'geometry');
  invalid(t, () => encodeStringPayload(buf, 508, 'abcdef'), 'buffer');
  parseError(t, () => decodeStringPayload(buf, 312, 320), /no NUL/);
  parseError(t, () => decodeStringPayload(buf, 312, 600), /payload range/);
});

// ---------------------------------------------------------------------------------------------
// loop_info64 and loop_config
// ---------------------------------------------------------------------------------------------

const info: LoopInfo64 = {
  device: encodeDev(259, 1),
  inode: 0x0123_4567_89ab_cdefn,
  rdevice: encodeDev(8, 2),
  offset: 1n << 33n,
  sizeLimit: 0xffff_ffff_ffff_ffffn,
  number: 7,
  encryptType: 0,
  encryptKeySize: 32,
  flags: LO_FLAGS.LO_FLAGS_AUTOCLEAR | LO_FLAGS.LO_FLAGS_DIRECT_IO,
  fileName: '/var/lib/dévmapper/data.img',
  cryptName: 'none',
  encryptKey: Uint8Array.from({ length: 32 }, (_, i) => i + 1),
  init: [1n, 0xffff_ffff_ffff_fffen],
};

test('loop_info64 round trip and field placement', (t) => {
  const buf = Buffer.alloc(300, 0xab);
  t.is(encodeLoopInfo64(buf, 8, info), 232);
  t.deepEqual(decodeLoopInfo64(buf, 8), info);
  t.is(buf.readBigUInt64LE(8 + 24), 1n << 33n, 'lo_offset at 24');
  t.is(buf.readUInt32LE(8 + 52), info.flags, 'lo_flags at 52');
  t.is(buf.toString('utf8', 8 + 56, 8 + 56 + 4), '/var', 'lo_file_name at 56');
  t.true(
    buf.subarray(8 + 56 + Buffer.byteLength(info.fileName), 8 + 120).every((b) => b === 0),
    'file name tail zeroed',
  );
  t.is(buf.readBigUInt64LE(8 + 216), 1n, 'lo_init at 216');
  t.is(buf[8 + 232], 0xab, 'nothing past the struct');
  // Defaults: everything zero.
  encodeLoopInfo64(buf, 8);
  t.true(buf.subarray(8, 240).every((b) => b === 0));
});

test('loop_info64 limits and malformed kernel output', (t) => {
  const buf = Buffer.alloc(300);
  t.is(encodeLoopInfo64(buf, 0, { fileName: 'f'.repeat(63) }), 232);
  invalid(t, () => encodeLoopInfo64(buf, 0, { fileName: 'f'.repeat(64) }), 'fileName');
  invalid(t, () => encodeLoopInfo64(buf, 0, { fileName: 'é'.repeat(32) }), 'fileName'); // 64 bytes
  invalid(t, () => encodeLoopInfo64(buf, 0, { cryptName: 'c'.repeat(64) }), 'cryptName');
  invalid(t, () => encodeLoopInfo64(buf, 0, { encryptKey: new Uint8Array(33) }), 'encryptKey');
  invalid(t, () => encodeLoopInfo64(buf, 0, { encryptKeySize: 33 }), 'encryptKeySize');
  invalid(t, () => encodeLoopInfo64(buf, 0, { offset: -1n }), 'offset');
  invalid(t, () => encodeLoopInfo64(buf, 0, { flags: -1 }), 'flags');
  invalid(t, () => encodeLoopInfo64(buf, 0, { init: [0n] as unknown as [bigint, bigint] }), 'init');
  invalid(t, () => encodeLoopInfo64(Buffer.alloc(231), 0, {}), 'buffer');
  // truncateUtf8 fits a long path without splitting a character.
  const long = `/srv/${'é'.repeat(40)}`;
  const cut = truncateUtf8(long, 63);
  t.true(Buffer.byteLength(cut) <= 63);
  t.true(long.startsWith(cut));
  t.is(Buffer.byteLength(cut), 63); // 5 + 29*2 = 63 exactly
  t.is(truncateUtf8(`/srv/${'é'.repeat(40)}`, 62), `/srv/${'é'.repeat(28)}`);
  t.is(encodeLoopInfo64(buf, 0, { fileName: cut }), 232);
  // lo_file_name without a NUL: the kernel always terminates it.
  buf.fill(0x41, 56, 120);
  parseError(t, () => decodeLoopInfo64(buf, 0), /lo_file_name/);
  parseError(t, () => decodeLoopInfo64(buf, 100), /exceed/);
});

test('loop_config round trip, reserved words zeroed, limits', (t) => {
  const buf = Buffer.alloc(400, 0xcd);
  t.is(encodeLoopConfig(buf, 0, { fd: 12, blockSize: 4096, info }), 304);
  t.deepEqual(decodeLoopConfig(buf, 0), { fd: 12, blockSize: 4096, info });
  t.is(buf.readUInt32LE(4), 4096);
  t.deepEqual(decodeLoopInfo64(buf, 8), info, 'info at offset 8');
  t.true(
    buf.subarray(240, 304).every((b) => b === 0),
    '__reserved zeroed',
  );
  t.is(buf[304], 0xcd);
  encodeLoopConfig(buf, 0, { fd: 0 });
  t.deepEqual(decodeLoopConfig(buf, 0).blockSize, 0);
  invalid(t, () => encodeLoopConfig(buf, 0, { fd: -1 }), 'fd');
  invalid(t, () => encodeLoopConfig(buf, 0, { fd: 2 ** 31 }), 'fd');
  invalid(t, () => encodeLoopConfig(buf, 0, { fd: 3, blockSize: 1000 }), 'blockSize');
  invalid(t, () => encodeLoopConfig(buf, 0, { fd: 3, blockSize: 256 }), 'blockSize');
  invalid(t, () => encodeLoopConfig(buf, 0, { fd: 3, info: { fileName: 'x'.repeat(64) } }), 'fileName');
  invalid(t, () => encodeLoopConfig(buf, 200, { fd: 3 }), 'buffer');
  parseError(t, () => decodeLoopConfig(buf, 97));
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
