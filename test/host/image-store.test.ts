// The image records under <home>/images (what `image ls`, `image rm` and `image rootfs` read):
// a record file that is damaged — not JSON, JSON of the wrong shape — is ERR_DM_METADATA
// naming the file, from list() as from read(), never a SyntaxError or a TypeError later on.
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DevmapperError } from '../../src/errors.js';
import { ImageStore, type ImageRecord } from '../../src/image/image-store.js';

const record = (ref: string): ImageRecord => ({
  ref,
  configDigest: `sha256:${'c'.repeat(64)}`,
  config: { rootfs: { type: 'layers', diff_ids: [`sha256:${'d'.repeat(64)}`] } },
  layers: [
    { layerId: `img-${'d'.repeat(64)}`, chainId: `sha256:${'d'.repeat(64)}`, diffId: `sha256:${'d'.repeat(64)}` },
  ],
  importedAt: new Date(0).toISOString(),
});

const fileOf = (store: ImageStore, ref: string): string =>
  join(store.dir, `${createHash('sha256').update(ref).digest('hex')}.image.json`);

test('a damaged image record is ERR_DM_METADATA naming its file, from list() and read()', (t) => {
  const home = mkdtempSync(join(tmpdir(), 'image-store-'));
  try {
    const store = new ImageStore(home);
    store.write(record('good:1'));
    store.write(record('bad:1'));
    t.deepEqual(
      store.list().map((r) => r.ref),
      ['bad:1', 'good:1'],
    );
    const file = fileOf(store, 'bad:1');
    for (const [what, text] of [
      ['cut short', JSON.stringify(record('bad:1')).slice(0, 40)],
      ['null', 'null'],
      ['layers not a list', JSON.stringify({ ...record('bad:1'), layers: 'img-x' })],
      ['a layer without an id', JSON.stringify({ ...record('bad:1'), layers: [{}] })],
      ['no ref', JSON.stringify({ ...record('bad:1'), ref: undefined })],
    ]) {
      writeFileSync(file, text!);
      for (const [call, run] of [
        ['list', () => store.list()],
        ['read', () => store.read('bad:1')],
      ] as const) {
        const error = t.throws(run, undefined, `${call}: ${what}`);
        t.true(error instanceof DevmapperError, `${call}, ${what}: ${error?.constructor.name}: ${error?.message}`);
        t.is((error as DevmapperError).code, 'ERR_DM_METADATA', `${call}, ${what}`);
        t.true(error?.message.includes(file), `${call}, ${what}: ${error?.message}`);
      }
    }
    t.is(store.read('good:1')?.ref, 'good:1', 'the good record still reads');
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
