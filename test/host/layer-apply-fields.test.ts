// applyLayerTar onto a plain directory, with tars written byte by byte: header and PAX fields
// that no tool would write (an owner past 32 bits, a time or mode that is no number, a device
// number dev_t cannot hold, a symlink without a target, a name longer than the filesystem
// takes) must fail as a LayerTarError naming the entry, not as whatever Node's fs throws (a
// RangeError, ENAMETOOLONG); and a time before 1970 is a time, kept as it is.
import test from 'ava';
import { lstatSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { applyLayerTar } from '../../src/driver/diff/apply.js';
import { LayerTarError } from '../../src/errors.js';
import { Kernel } from '../../src/ioctl/kernel.js';

const kernel = Kernel.for();

/** A ustar header block; `type` is the typeflag character. */
function header(
  name: string,
  type: string,
  size: number,
  options: { linkname?: string; mtime?: number; raw?: Record<number, string> } = {},
): Buffer {
  const block = Buffer.alloc(512);
  block.write(name, 0, 'latin1');
  const octal = (value: number, width: number, at: number): void => {
    block.write(`${value.toString(8).padStart(width - 1, '0')}\0`, at, 'latin1');
  };
  octal(type === '5' ? 0o755 : 0o644, 8, 100);
  octal(0, 8, 108);
  octal(0, 8, 116);
  octal(size, 12, 124);
  octal(options.mtime ?? 0, 12, 136);
  block.write(type, 156, 'latin1');
  block.write(options.linkname ?? '', 157, 'latin1');
  block.write('ustar\x0000', 257, 'latin1');
  for (const [at, text] of Object.entries(options.raw ?? {})) block.write(text, Number(at), 'latin1');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

function member(name: string, type: string, data = Buffer.alloc(0), linkname?: string): Buffer {
  return Buffer.concat([
    header(name, type, data.length, { linkname }),
    data,
    Buffer.alloc((512 - (data.length % 512)) % 512),
  ]);
}

/** A PAX extended header ('x') with these records, for the member after it. */
function pax(records: Record<string, string>): Buffer {
  const body = Buffer.concat(
    Object.entries(records).map(([key, value]) => {
      const text = ` ${key}=${value}\n`;
      let length = Buffer.byteLength(text) + 1;
      while (String(length).length + Buffer.byteLength(text) !== length) length++;
      return Buffer.from(`${length}${text}`);
    }),
  );
  return member('PaxHeader', 'x', body);
}

const tarOf = (...members: Buffer[]): Buffer => Buffer.concat([...members, Buffer.alloc(1024)]);

async function applied<T>(tar: Buffer, look: (root: string) => T): Promise<T> {
  const root = mkdtempSync(join(tmpdir(), 'apply-fields-'));
  try {
    await applyLayerTar(root, Readable.from([tar]), { kernel });
    return look(root);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

test('fields the kernel cannot take are ERR_DM_LAYER_TAR_INVALID naming the entry', async (t) => {
  const file = member('f', '0', Buffer.from('x'));
  // 260 nested directories of 16 bytes: each name fits, the path past PATH_MAX does not.
  const deep = `${Array.from({ length: 260 }, (_, i) => `d${String(i).padStart(15, '0')}`).join('/')}/f`;
  const cases: Array<[string, Buffer, string]> = [
    ['uid past 32 bits', tarOf(pax({ uid: '4294967296' }), file), 'f'],
    ['uid that is no number', tarOf(pax({ uid: 'abc' }), file), 'f'],
    ['negative gid', tarOf(pax({ gid: '-5' }), file), 'f'],
    ['mtime that is no number', tarOf(pax({ mtime: 'nan' }), file), 'f'],
    ['mtime past any date', tarOf(pax({ mtime: '1e20' }), file), 'f'],
    ['atime that is no number', tarOf(pax({ atime: 'soon' }), file), 'f'],
    ['symlink without a target', tarOf(member('s', '2')), 's'],
    ['symlink target with a NUL', tarOf(pax({ linkpath: 'a\0b' }), member('s', '2')), 's'],
    ['name component of 300 bytes', tarOf(pax({ path: 'n'.repeat(300) }), file), 'n'.repeat(300)],
    ['path past PATH_MAX', tarOf(pax({ path: deep }), file), deep],
    ['mode that is no octal number', tarOf(header('m', '0', 0, { raw: { 100: 'zzzzzzz\0' } })), 'm'],
    ['device major that is no octal number', tarOf(header('c', '3', 0, { raw: { 329: 'zzzzzzz\0' } })), 'c'],
    ['device major past 12 bits', tarOf(header('b', '4', 0, { raw: { 329: '0010010\0' } })), 'b'],
    ['device minor past 20 bits', tarOf(header('d', '3', 0, { raw: { 337: '7777777\0' } })), 'd'],
  ];
  for (const [what, tar, entry] of cases) {
    const error = await t.throwsAsync(
      applied(tar, () => undefined),
      undefined,
      what,
    );
    t.true(error instanceof LayerTarError, `${what}: ${error?.constructor.name} ${error?.message}`);
    t.is((error as LayerTarError).code, 'ERR_DM_LAYER_TAR_INVALID', what);
    t.is((error as LayerTarError).entry, entry, what);
  }
});

test('times before 1970 are kept on files, symlinks and directories', async (t) => {
  const tar = tarOf(
    pax({ mtime: '-100.5' }),
    member('dir/', '5'),
    pax({ mtime: '-86400' }),
    member('dir/file', '0', Buffer.from('old')),
    pax({ mtime: '-1' }),
    member('link', '2', Buffer.alloc(0), 'dir/file'),
  );
  const times = await applied(tar, (root) => ({
    dir: statSync(join(root, 'dir')).mtimeMs,
    file: statSync(join(root, 'dir/file')).mtimeMs,
    link: lstatSync(join(root, 'link')).mtimeMs,
  }));
  t.deepEqual(times, { dir: -100_500, file: -86_400_000, link: -1000 });
});
