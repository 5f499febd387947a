// readImageArchive on image archives that are wrong in one place each: an index, manifest or
// docker manifest.json entry of the wrong shape, a descriptor whose mediaType is not an image
// manifest's, a manifest or config whose bytes do not hash to the digest that names them. Each
// must be refused with a DevmapperError (ERR_DM_IMAGE_INVALID, or ERR_DM_IMAGE_DIGEST for a
// blob that is not what its digest says) before any layer is touched, never a TypeError; an
// archive that cannot be read at all (missing, a directory) is a DmSystemError naming it.
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar-stream';
import { DevmapperError, DmSystemError } from '../../src/errors.js';
import { readImageArchive } from '../../src/image/archive.js';

const sha = (data: Buffer | string): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const blobName = (digest: string): string => `blobs/sha256/${digest.slice(7)}`;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

async function tarOf(members: Record<string, string | Buffer>): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const [name, data] of Object.entries(members))
    await new Promise<void>((resolve, reject) =>
      pack.entry({ name, mtime: new Date(0) }, Buffer.from(data), (e) => (e ? reject(e) : resolve())),
    );
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const layer = await tarOf({ hello: 'hi\n' });
const config = JSON.stringify({
  architecture: 'amd64',
  os: 'linux',
  rootfs: { type: 'layers', diff_ids: [sha(layer)] },
});
const manifestOf = (configText: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(configText), size: configText.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(layer), size: layer.length }],
    ...extra,
  });
const manifest = manifestOf(config);
const indexOf = (descriptors: unknown): string => JSON.stringify({ schemaVersion: 2, manifests: descriptors });
const pointer = { mediaType: OCI_MANIFEST, digest: sha(manifest), size: manifest.length };

/** A good OCI layout, with `change` applied to its members. */
function layout(change: Record<string, string | Buffer> = {}): Record<string, string | Buffer> {
  return {
    'oci-layout': '{"imageLayoutVersion":"1.0.0"}',
    'index.json': indexOf([{ ...pointer, annotations: { 'org.opencontainers.image.ref.name': 'good' } }]),
    [blobName(sha(layer))]: layer,
    [blobName(sha(config))]: config,
    [blobName(sha(manifest))]: manifest,
    ...change,
  };
}

const dir = mkdtempSync(join(tmpdir(), 'image-archive-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

async function read(members: Record<string, string | Buffer>): Promise<ReturnType<typeof readImageArchive>> {
  const file = join(dir, `${n++}.tar`);
  writeFileSync(file, await tarOf(members));
  return readImageArchive(file);
}

test('the good layout reads: one image, its ref, its config digest', async (t) => {
  const [image, ...more] = await read(layout());
  t.is(more.length, 0);
  t.is(image?.ref, 'good');
  t.is(image?.configDigest, sha(config));
  t.is(image?.layers.length, 1);
});

test('an index, manifest or manifest.json entry of the wrong shape is ERR_DM_IMAGE_INVALID', async (t) => {
  const badManifest = (text: string): Record<string, string> => ({
    'index.json': indexOf([{ mediaType: OCI_MANIFEST, digest: sha(text) }]),
    [blobName(sha(text))]: text,
  });
  const dockerEntry = (entry: unknown): Record<string, string> => ({
    'manifest.json': JSON.stringify([entry]),
    'c.json': JSON.stringify({ rootfs: { type: 'layers', diff_ids: [] } }),
  });
  const cases: Array<[string, Record<string, string | Buffer>]> = [
    ['index.json that is null', layout({ 'index.json': 'null' })],
    ['index.json whose manifests is an object', layout({ 'index.json': JSON.stringify({ manifests: { a: 1 } }) })],
    ['a null descriptor in index.json', layout({ 'index.json': indexOf([null]) })],
    ['a manifest without a config', layout(badManifest(JSON.stringify({ schemaVersion: 2, layers: [] })))],
    ['a manifest whose layers is an object', layout(badManifest(manifestOf(config, { layers: { a: 1 } })))],
    ['a manifest with a null layer', layout(badManifest(manifestOf(config, { layers: [null] })))],
    [
      'a config descriptor pointed at as a manifest',
      layout({
        'index.json': indexOf([{ mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config) }]),
      }),
    ],
    [
      'an artifact manifest, not an image',
      layout({ 'index.json': indexOf([{ ...pointer, mediaType: 'application/vnd.oci.artifact.manifest.v1+json' }]) }),
    ],
    ['a manifest.json entry that is null', dockerEntry(null)],
    ['a manifest.json entry whose Config is a number', dockerEntry({ Config: 5, Layers: [] })],
    ['a manifest.json entry whose Layers is a string', dockerEntry({ Config: 'c.json', Layers: 'l.tar' })],
  ];
  for (const [what, members] of cases) {
    const error = await t.throwsAsync(read(members), undefined, what);
    t.true(error instanceof DevmapperError, `${what}: ${error?.constructor.name}: ${error?.message}`);
    t.is((error as DevmapperError).code, 'ERR_DM_IMAGE_INVALID', `${what}: ${error?.message}`);
  }
});

test('a manifest or config whose bytes are not what its digest says is ERR_DM_IMAGE_DIGEST', async (t) => {
  const tampered = config.replace('"os":"linux"', '"os":"linux","config":{"Cmd":["/evil"]}');
  for (const [what, members] of [
    ['a config changed under its digest', layout({ [blobName(sha(config))]: tampered })],
    ['a manifest changed under its digest', layout({ [blobName(sha(manifest))]: `${manifest} ` })],
  ] as const) {
    const error = await t.throwsAsync(read(members), undefined, what);
    t.true(error instanceof DevmapperError, `${what}: ${error?.constructor.name}: ${error?.message}`);
    t.is((error as DevmapperError).code, 'ERR_DM_IMAGE_DIGEST', `${what}: ${error?.message}`);
  }
});

test('an archive that cannot be read is a DmSystemError naming the file', async (t) => {
  for (const [file, code] of [
    [join(dir, 'missing.tar'), 'ENOENT'],
    [dir, 'EISDIR'],
  ] as const) {
    const error = await t.throwsAsync(readImageArchive(file), undefined, file);
    t.true(error instanceof DmSystemError, `${file}: ${error?.constructor.name}: ${error?.message}`);
    t.is((error as DmSystemError).code, code, file);
    t.true(error?.message.includes(file), error?.message);
  }
});
