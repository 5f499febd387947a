// Host tests of the loop device structs in src/ioctl/codec.ts: loop_info64 and loop_config round
// trips and field placement, typed rejection of every length limit, truncateUtf8 for long backing
// file names, and ParseError on malformed kernel output.
import test from 'ava';
import { encodeDev } from '../../src/ioctl/abi.js';
import {
  decodeLoopConfig,
  decodeLoopInfo64,
  encodeLoopConfig,
  encodeLoopInfo64,
  truncateUtf8,
  type LoopInfo64,
} from '../../src/ioctl/codec.js';
import { LO_FLAGS } from '../../src/ioctl/loop-abi.js';
import { invalid, parseError } from './helpers/typed-errors.js';

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
