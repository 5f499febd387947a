// Host tests of the decoders of the dm list ioctls' output in src/ioctl/codec.ts: dm_name_list
// (DM_LIST_DEVICES) in the 4.45+, 4.37-4.44 and pre-4.37 layouts, and dm_target_versions
// (DM_LIST_VERSIONS), from payloads built byte by byte (helpers/kernel-payloads.ts); ParseError
// (never RangeError, never a hang) on malformed ones.
import test from 'ava';
import {
  DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID,
  DM_NAME_LIST_FLAG_HAS_UUID,
  decodeDev,
  encodeDev,
} from '../../src/ioctl/abi.js';
import { decodeNameList, decodeTargetVersions } from '../../src/ioctl/codec.js';
import { nameListPayload, type NameRecord, versionsPayload } from './helpers/kernel-payloads.js';
import { parseError } from './helpers/typed-errors.js';

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
// dm_target_versions
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
