// Host tests of the target payloads in src/ioctl/codec.ts: dm_target_spec (encodeTargets for
// DM_TABLE_LOAD, decodeTargetSpecs for DM_TABLE_STATUS), dm_target_deps (DM_TABLE_DEPS),
// dm_target_msg and the string payloads (rename/geometry input, DM_TARGET_MSG output). Typed
// rejection of every bad table or message; ParseError (never RangeError, never a hang) on
// malformed kernel output, built byte by byte (helpers/kernel-payloads.ts).
import test from 'ava';
import { encodeDev } from '../../src/ioctl/abi.js';
import {
  decodeStringPayload,
  decodeTargetDeps,
  decodeTargetSpecs,
  encodeStringPayload,
  encodeTargetMessage,
  encodeTargets,
  targetMessageSize,
  targetsSize,
  type TargetSpec,
} from '../../src/ioctl/codec.js';
import { align8, statusPayload } from './helpers/kernel-payloads.js';
import { invalid, parseError } from './helpers/typed-errors.js';

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
// dm_target_deps
// ---------------------------------------------------------------------------------------------

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
