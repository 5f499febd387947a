// The pure parts of the layer tar code: entry path checks, whiteout and opaque names, PAX
// records with binary xattr values through the tar-stream hooks (written, read back byte for
// byte, and readable by GNU tar), compression detection, and chain ids.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { LayerTarError } from '../../src/errors.js';
import {
  ancestorsOf,
  entryRole,
  layerPath,
  opaqueMarkerName,
  whiteoutName,
} from '../../src/driver/diff/entry-paths.js';
import {
  compressionOf,
  decompressed,
  encodePaxRecord,
  layerExtract,
  layerPack,
  parsePaxRecords,
  xattrsOf,
  type PackHeader,
} from '../../src/driver/diff/tar-format.js';
import { chainIds, layerIdOf } from '../../src/image/images.js';

const unsafe = (fn: () => unknown): LayerTarError | undefined => {
  try {
    fn();
  } catch (error) {
    return error as LayerTarError;
  }
  return undefined;
};

test('layer paths: relative, normalized; absolute, .. and NUL refused with the entry named', (t) => {
  t.is(layerPath('./etc/passwd'), 'etc/passwd');
  t.is(layerPath('etc//ssl/./certs/'), 'etc/ssl/certs');
  t.is(layerPath('./'), '');
  t.is(layerPath('.'), '');
  t.is(layerPath('a..b/..c'), 'a..b/..c', 'dots inside a name are a name');
  for (const bad of ['/etc/passwd', '../x', 'a/../../x', 'a/..', './..', 'a\0b']) {
    const error = unsafe(() => layerPath(bad));
    t.true(error instanceof LayerTarError, bad);
    t.is(error?.code, 'ERR_DM_LAYER_TAR_UNSAFE', bad);
    t.is(error?.entry, bad);
  }
  t.deepEqual(ancestorsOf('a/b/c'), ['a', 'a/b']);
  t.deepEqual(ancestorsOf('a'), []);
});

test('whiteouts, opaque markers and aufs metadata', (t) => {
  t.deepEqual(entryRole('etc/.wh.passwd'), { role: 'whiteout', path: 'etc/passwd' });
  t.deepEqual(entryRole('.wh.top'), { role: 'whiteout', path: 'top' });
  t.deepEqual(entryRole('opt/.wh..wh..opq'), { role: 'opaque', dir: 'opt' });
  t.deepEqual(entryRole('.wh..wh..opq'), { role: 'opaque', dir: '' });
  t.deepEqual(entryRole('.wh..wh.plnk/123.4'), { role: 'ignored', path: '.wh..wh.plnk/123.4' });
  t.deepEqual(entryRole('etc/passwd'), { role: 'content', path: 'etc/passwd' });
  t.deepEqual(entryRole('etc/x.wh.y'), { role: 'content', path: 'etc/x.wh.y' });
  for (const bad of ['a/.wh...', 'a/.wh..', 'a/.wh.'])
    t.is(unsafe(() => entryRole(bad))?.code, 'ERR_DM_LAYER_TAR_UNSAFE', bad);
  t.is(whiteoutName('etc/passwd'), 'etc/.wh.passwd');
  t.is(whiteoutName('top'), '.wh.top');
  t.is(opaqueMarkerName('opt'), 'opt/.wh..wh..opq');
});

const CAPABILITY = Buffer.from([
  0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0x00, 0x00, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
]);

async function packOne(xattrs: Map<string, Buffer>, name: string): Promise<Buffer> {
  const pack = layerPack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  const header: PackHeader = { name, type: 'file', mode: 0o755, size: 5, xattrs };
  await new Promise<void>((resolve, reject) =>
    pack.entry(header, Buffer.from('hello'), (e) => (e ? reject(e) : resolve())),
  );
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

test('PAX xattrs: binary values written and read back byte for byte; GNU tar reads the same entry', async (t) => {
  const name = `dir/${'long-component/'.repeat(8)}naïve.bin`;
  const xattrs = new Map([
    ['security.capability', CAPABILITY],
    ['user.note', Buffer.from('ünïcode')],
  ]);
  const tarball = await packOne(xattrs, name);
  const extract = layerExtract();
  const seen: Array<{ name: string; xattrs: Map<string, Buffer>; body: string }> = [];
  const reading = (async () => {
    for await (const entry of extract) {
      let body = '';
      for await (const chunk of entry) body += (chunk as Buffer).toString();
      seen.push({ name: entry.header.name, xattrs: xattrsOf(entry.header), body });
    }
  })();
  extract.end(tarball);
  await reading;
  t.is(seen.length, 1);
  t.is(seen[0]!.name, name);
  t.is(seen[0]!.body, 'hello');
  t.true(seen[0]!.xattrs.get('security.capability')!.equals(CAPABILITY));
  t.is(seen[0]!.xattrs.get('user.note')!.toString(), 'ünïcode');
  const dir = mkdtempSync(join(tmpdir(), 'pax-'));
  try {
    writeFileSync(join(dir, 'x.tar'), tarball);
    t.is(execFileSync('tar', ['-tf', join(dir, 'x.tar')], { encoding: 'utf8' }), `${name}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('PAX record encoding: the length prefix counts itself', (t) => {
  for (const size of [0, 1, 80, 89, 90, 95, 96, 990, 995, 10_000]) {
    const record = encodePaxRecord('k', Buffer.alloc(size, 0x41));
    t.is(Number(record.toString('latin1').split(' ')[0]), record.length, `value of ${size} bytes`);
    t.true(parsePaxRecords(record)[0]![1].equals(Buffer.alloc(size, 0x41)));
  }
});

test('compression by magic bytes; bzip2 and xz refused with ERR_DM_LAYER_TAR_INVALID', async (t) => {
  t.is(compressionOf(Buffer.from([0x1f, 0x8b, 8, 0])), 'gzip');
  t.is(compressionOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), 'zstd');
  t.is(compressionOf(Buffer.from('ustar')), 'none');
  const collect = async (input: Buffer[]): Promise<Buffer> => {
    const out: Buffer[] = [];
    for await (const chunk of decompressed(Readable.from(input))) out.push(chunk);
    return Buffer.concat(out);
  };
  const data = Buffer.from('some tar bytes '.repeat(1000));
  t.true((await collect([gzipSync(data)])).equals(data));
  const gz = gzipSync(data);
  t.true(
    (await collect([gz.subarray(0, 1), gz.subarray(1, 3), gz.subarray(3)])).equals(data),
    'magic split over chunks',
  );
  t.true((await collect([data])).equals(data));
  const bad = await t.throwsAsync(collect([Buffer.from('BZh91AY&SY')]));
  t.is((bad as LayerTarError).code, 'ERR_DM_LAYER_TAR_INVALID');
  const truncated = await t.throwsAsync(collect([gz.subarray(0, gz.length - 10)]));
  t.is((truncated as LayerTarError).code, 'ERR_DM_LAYER_TAR_INVALID');
});

test('chain ids and the layer ids made of them', (t) => {
  const a = `sha256:${'a'.repeat(64)}`;
  const b = `sha256:${'b'.repeat(64)}`;
  const [c0, c1] = chainIds([a, b]);
  t.is(c0, a);
  // sha256("sha256:aaa… sha256:bbb…"), computed independently with sha256sum
  t.is(c1, `sha256:${execFileSync('sha256sum', { input: `${a} ${b}`, encoding: 'utf8' }).split(' ')[0]}`);
  t.is(layerIdOf(a), `img-${'a'.repeat(64)}`);
  t.true(layerIdOf(a).length <= 80);
});

test('apply onto a directory: whiteouts, an opaque directory, a whiteout under a missing parent, a path through a symlink', async (t) => {
  const { applyLayerTar } = await import('../../src/driver/diff/apply.js');
  const { Kernel } = await import('../../src/ioctl/kernel.js');
  const kernel = Kernel.for();
  const { existsSync, mkdirSync, readdirSync, symlinkSync } = await import('node:fs');
  const root = mkdtempSync(join(tmpdir(), 'apply-'));
  const outside = mkdtempSync(join(tmpdir(), 'outside-'));
  try {
    for (const dir of ['a', 'b', 'c']) mkdirSync(join(root, dir));
    for (const file of ['a/x', 'a/y', 'b/z', 'c/1']) writeFileSync(join(root, file), file);
    const pack = layerPack();
    const chunks: Buffer[] = [];
    const done = (async () => {
      for await (const chunk of pack) chunks.push(chunk as Buffer);
    })();
    const entry = (header: PackHeader, data = Buffer.alloc(0)) =>
      new Promise<void>((resolve, reject) => pack.entry(header, data, (e) => (e ? reject(e) : resolve())));
    await entry({ name: 'a/.wh.x', type: 'file', mode: 0o644 });
    await entry({ name: '.wh.b', type: 'file', mode: 0o644 });
    await entry({ name: 'c/', type: 'directory', mode: 0o755 });
    await entry({ name: 'c/.wh..wh..opq', type: 'file', mode: 0o644 });
    await entry({ name: 'c/new', type: 'file', mode: 0o600, size: 3 }, Buffer.from('new'));
    await entry({ name: 'missing/deeper/.wh.gone', type: 'file', mode: 0o644 });
    pack.finalize();
    await done;
    const result = await applyLayerTar(root, Readable.from([gzipSync(Buffer.concat(chunks))]), { kernel });
    t.deepEqual(readdirSync(root).sort(), ['a', 'c']);
    t.deepEqual(readdirSync(join(root, 'a')), ['y']);
    t.deepEqual(readdirSync(join(root, 'c')), ['new']);
    t.false(existsSync(join(root, 'missing')), 'a whiteout makes no directories');
    t.deepEqual(result.opaqueDirs, ['c']);
    t.is(result.bytes, 3n);

    symlinkSync(outside, join(root, 'evil'));
    const hostile = layerPack();
    const bad: Buffer[] = [];
    const reading = (async () => {
      for await (const chunk of hostile) bad.push(chunk as Buffer);
    })();
    await new Promise<void>((resolve, reject) =>
      hostile.entry({ name: 'evil/x', type: 'file', mode: 0o644, size: 1 }, Buffer.from('x'), (e) =>
        e ? reject(e) : resolve(),
      ),
    );
    hostile.finalize();
    await reading;
    const error = await t.throwsAsync(applyLayerTar(root, Readable.from([Buffer.concat(bad)]), { kernel }));
    t.is((error as LayerTarError).code, 'ERR_DM_LAYER_TAR_UNSAFE');
    t.is((error as LayerTarError).entry, 'evil/x');
    t.deepEqual(readdirSync(outside), [], 'nothing written through the symlink');
  } finally {
    rmSync(root, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  }
});
