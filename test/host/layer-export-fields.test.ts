// The diff tar (exportChanges, what `devmapper diff` and Driver.diff stream) of a directory
// whose entries hold numbers ustar cannot: an owner past 262143 (tar-stream writes 6 octal
// digits) and times before 1970. Applied back onto an empty directory, every entry must have
// the owner and times it had: the numbers travel in PAX records, not clamped or wrapped.
import test from 'ava';
import {
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { applyLayerTar } from '../../src/driver/diff/apply.js';
import { walkChanges } from '../../src/driver/diff/changes.js';
import { exportChanges } from '../../src/driver/diff/export.js';
import { Kernel } from '../../src/ioctl/kernel.js';

const kernel = Kernel.for();

/** uid, gid and mtime (ms) of every name, as lstat sees them. */
function owners(root: string, names: string[]): Record<string, [number, number, number]> {
  return Object.fromEntries(
    names.map((name) => {
      const st = lstatSync(join(root, name));
      return [name, [st.uid, st.gid, st.mtimeMs]];
    }),
  );
}

test('owners past 262143 and times before 1970 survive diff and apply', async (t) => {
  const upper = mkdtempSync(join(tmpdir(), 'export-upper-'));
  const copy = mkdtempSync(join(tmpdir(), 'export-copy-'));
  try {
    mkdirSync(join(upper, 'dir'));
    writeFileSync(join(upper, 'dir/file'), 'content\n');
    symlinkSync('dir/file', join(upper, 'link'));
    writeFileSync(join(upper, 'plain'), 'ordinary numbers\n');
    lchownSync(join(upper, 'dir/file'), 3_000_000, 4_294_967_294);
    lchownSync(join(upper, 'link'), 262_144, 100_000);
    lchownSync(join(upper, 'plain'), 1000, 1000);
    utimesSync(join(upper, 'dir/file'), '-86400', '-86400'); // Node takes a negative number for "now"
    lutimesSync(join(upper, 'link'), '-1.5', '-1.5');
    utimesSync(join(upper, 'plain'), 1_700_000_000, 1_700_000_000);
    utimesSync(join(upper, 'dir'), '-100.5', '-100.5');
    const names = ['dir', 'dir/file', 'link', 'plain'];
    const expected = owners(upper, names);
    t.deepEqual(expected['dir/file'], [3_000_000, 4_294_967_294, -86_400_000], 'the fixture holds what it should');

    const chunks: Buffer[] = [];
    for await (const chunk of exportChanges(upper, walkChanges(upper, undefined, { kernel }), { kernel }))
      chunks.push(chunk as Buffer);
    await applyLayerTar(copy, Readable.from([Buffer.concat(chunks)]), { kernel });
    t.deepEqual(owners(copy, names), expected);
  } finally {
    rmSync(upper, { recursive: true, force: true });
    rmSync(copy, { recursive: true, force: true });
  }
});
