// The layer record store on a real filesystem: pack plus journal, compaction (the migration of
// a home with only per-layer files), tombstones, a damaged pack entry named by file, entry and
// field, and check --repair's quarantine of that entry alone, idempotently. Writes go to
// transactions.log first (test/host/transaction-log.test.ts); fold() puts them into the files.
import test from 'ava';
import fs, { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { MetadataError } from '../../src/errors.js';
import { encodeEntry, PACK } from '../../src/driver/layer-pack.js';
import { type LayerRecord, MetadataStore } from '../../src/driver/metadata-store.js';

const record = (id: string, deviceId: number, extra: Partial<LayerRecord> = {}): LayerRecord => ({
  id,
  parent: null,
  deviceId,
  size: '1048576',
  transactionId: String(deviceId),
  ...extra,
});

function home(t: { teardown(f: () => void): void }): { dir: string; store: MetadataStore } {
  const root = mkdtempSync(join(tmpdir(), 'dm-store-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, 'metadata');
  return { dir, store: new MetadataStore(dir) };
}

const layerFiles = (dir: string): string[] => readdirSync(dir).filter((n) => n.endsWith('.layer.json'));

test('a home of per-layer files loads as before and is compacted into the pack, records unchanged', (t) => {
  const { dir, store } = home(t);
  const written = Array.from({ length: 40 }, (_, i) => record(`L${i}`, i + 1, i % 3 === 0 ? { meta: { n: i } } : {}));
  for (const r of written) store.writeLayer(r);
  t.true(store.fold(), 'the logged records go into one file each');
  const before = store.readAllLayers();
  t.is(before.length, 40);
  t.false(store.compactIfLong(41), 'a journal shorter than the threshold stays');
  t.true(store.compactIfLong(40));
  t.deepEqual(layerFiles(dir), [], 'the journal is gone');
  t.true(existsSync(join(dir, PACK)));
  store.close();
  const reopened = new MetadataStore(dir);
  t.deepEqual(reopened.readAllLayers(), before);
  t.deepEqual(reopened.readLayer('L3'), written[3]);
});

test('journal files override pack entries; removing a packed layer leaves a tombstone', (t) => {
  const { dir, store } = home(t);
  for (const r of [record('a', 1), record('b', 2), record('c', 3)]) store.writeLayer(r);
  store.fold();
  store.readAllLayers();
  t.true(store.compactIfLong(1));
  store.writeLayer(record('a', 1, { deferredDelete: true }));
  store.removeLayer('b');
  store.writeLayer(record('d', 4));
  store.fold();
  t.deepEqual(JSON.parse(readFileSync(join(dir, 'b.layer.json'), 'utf8')), { id: 'b', removed: true });
  const reopened = new MetadataStore(dir);
  t.deepEqual(
    reopened.readAllLayers().map((r) => [r.id, r.deferredDelete === true]),
    [
      ['a', true],
      ['c', false],
      ['d', false],
    ],
  );
  t.is(reopened.readLayer('b'), undefined);
  // A journal-only layer goes without a tombstone; a re-created packed one replaces its tombstone.
  reopened.removeLayer('d');
  reopened.fold();
  t.false(existsSync(join(dir, 'd.layer.json')));
  reopened.writeLayer(record('b', 5));
  t.is(reopened.readLayer('b')?.deviceId, 5);
  reopened.fold();
  reopened.readAllLayers();
  t.true(reopened.compactIfLong(1));
  t.deepEqual(
    new MetadataStore(dir).readAllLayers().map((r) => [r.id, r.deviceId]),
    [
      ['a', 1],
      ['b', 5],
      ['c', 3],
    ],
  );
});

test('a crash after the pack was renamed, before the journal went, loads the same records', (t) => {
  const { dir, store } = home(t);
  for (const r of [record('a', 1), record('b', 2)]) store.writeLayer(r);
  store.fold();
  store.readAllLayers();
  t.true(store.compactIfLong(1));
  // What the interrupted compaction left: b's tombstone and a's journal file next to a pack with both.
  writeFileSync(join(dir, PACK), `${encodeEntry(record('a', 1))}\n${encodeEntry(record('b', 2))}\n`);
  writeFileSync(join(dir, 'a.layer.json'), JSON.stringify(record('a', 1)));
  writeFileSync(join(dir, 'b.layer.json'), JSON.stringify({ id: 'b', removed: true }));
  t.deepEqual(
    new MetadataStore(dir).readAllLayers().map((r) => r.id),
    ['a'],
  );
});

test('a damaged pack entry is a MetadataError naming the pack, the entry and the field; the others load', (t) => {
  const { dir, store } = home(t);
  const good = [record('a', 1), record('b', 2), record('c', 3)];
  const bad = { ...record('x', 9), deviceId: 'nine' };
  const badLine = encodeEntry(bad as unknown as LayerRecord);
  writeFileSync(join(dir, PACK), `${encodeEntry(good[0]!)}\n${badLine}\n${encodeEntry(good[1]!)}\n`);
  const error = t.throws(() => store.readAllLayers(), { instanceOf: MetadataError });
  t.is(error?.file, join(dir, PACK));
  t.is(error?.field, 'entry 2 (layer x) deviceId');
  t.regex(error?.message ?? '', /"nine" is not a thin id/);
  const scan = store.scanLayers();
  t.deepEqual(
    scan.records.map((r) => r.id),
    ['a', 'b'],
  );
  t.deepEqual(
    scan.damaged.map((d) => [d.name, d.claimedDeviceId]),
    [['layers.pack#2', undefined]],
  );
  t.false(store.compactIfLong(0), 'a scan with damage never compacts');
});

test('an altered pack line fails its checksum and names no thin id', (t) => {
  const { dir, store } = home(t);
  const line = encodeEntry(record('a', 17));
  writeFileSync(join(dir, PACK), `${line.replace('"deviceId":17', '"deviceId":71')}\n${encodeEntry(record('b', 2))}\n`);
  const scan = store.scanLayers();
  t.deepEqual(
    scan.records.map((r) => r.id),
    ['b'],
  );
  t.is(scan.damaged.length, 1);
  t.is(scan.damaged[0]!.error.field, 'entry 1');
  t.regex(scan.damaged[0]!.error.message, /checksum/);
  t.is(scan.damaged[0]!.claimedDeviceId, undefined, 'a digit of an altered line cannot be trusted');
});

test('repair quarantines a damaged pack entry alone, idempotently, and keeps its thin id claimed', (t) => {
  const { dir, store } = home(t);
  const bad = { ...record('x', 9), size: -5 };
  writeFileSync(
    join(dir, PACK),
    `${encodeEntry(record('a', 1))}\n${encodeEntry(bad as unknown as LayerRecord)}\n${encodeEntry(record('b', 2))}\n`,
  );
  const damaged = store.scanLayers().damaged;
  t.deepEqual(
    damaged.map((d) => [d.name, d.claimedDeviceId]),
    [['layers.pack#2', 9]],
  );
  const moved = store.quarantine(damaged[0]!.name);
  t.true(moved.startsWith(store.quarantineDir));
  t.deepEqual(JSON.parse(readFileSync(moved, 'utf8')), bad, 'the entry is kept as it was');
  t.deepEqual(store.quarantinedThinIds(), [9], 'its thin id stays claimed');
  const after = new MetadataStore(dir);
  t.deepEqual(
    after.readAllLayers().map((r) => r.id),
    ['a', 'b'],
    'the other entries stay in the pack',
  );
  t.deepEqual(after.scanLayers().damaged, [], 'a second repair finds nothing to do');
  t.is(after.quarantined().length, 1);
});

test('a packed layer set aside by repair is copied to the quarantine and hidden by a tombstone', (t) => {
  const { dir, store } = home(t);
  for (const r of [record('a', 1), record('b', 2)]) store.writeLayer(r);
  store.fold();
  store.readAllLayers();
  t.true(store.compactIfLong(1));
  const moved = store.quarantine('b.layer.json');
  t.deepEqual(JSON.parse(readFileSync(moved, 'utf8')), record('b', 2));
  t.deepEqual(store.quarantinedThinIds(), [2]);
  t.deepEqual(
    new MetadataStore(dir).readAllLayers().map((r) => r.id),
    ['a'],
  );
});

test('a damaged journal file over a packed layer hides it; repair keeps both versions in the quarantine', (t) => {
  const { dir, store } = home(t);
  for (const r of [record('a', 1), record('b', 2)]) store.writeLayer(r);
  store.fold();
  store.readAllLayers();
  t.true(store.compactIfLong(1));
  writeFileSync(join(dir, 'b.layer.json'), '{"id":"b","deviceId":"x"');
  const scan = store.scanLayers();
  t.deepEqual(
    scan.records.map((r) => r.id),
    ['a'],
  );
  t.deepEqual(
    scan.damaged.map((d) => [d.name, d.claimedDeviceId]),
    [['b.layer.json', undefined]],
  );
  store.quarantine('b.layer.json');
  t.is(store.quarantined().length, 2);
  t.true(store.quarantinedThinIds().includes(2), "the pack's version names thin id 2");
  const after = new MetadataStore(dir).scanLayers();
  t.deepEqual(
    after.records.map((r) => r.id),
    ['a'],
  );
  t.deepEqual(after.damaged, []);
});

test('two pack entries for one layer: the second is damaged', (t) => {
  const { dir, store } = home(t);
  writeFileSync(join(dir, PACK), `${encodeEntry(record('a', 1))}\n${encodeEntry(record('a', 2))}\n`);
  const scan = store.scanLayers();
  t.deepEqual(
    scan.records.map((r) => r.deviceId),
    [1],
  );
  t.is(scan.damaged[0]!.error.field, 'entry 2 (layer a) id');
  t.is(scan.damaged[0]!.claimedDeviceId, 2);
});

test('a pack that cannot be read is one damaged record naming no thin id; quarantined whole, it still names none', (t) => {
  const { dir, store } = home(t);
  store.writeLayer(record('a', 1));
  mkdirSync(join(dir, PACK)); // read(2) fails with EISDIR, as a disk error would fail it
  const scan = store.scanLayers();
  t.deepEqual(
    scan.damaged.map((d) => [d.name, d.claimedDeviceId]),
    [[PACK, undefined]],
  );
  t.regex(scan.damaged[0]!.error.message, /layers\.pack: cannot be read/);
  store.quarantine(PACK);
  t.false(existsSync(join(dir, PACK)));
  t.deepEqual(store.quarantinedThinIds(), [undefined], 'any thin id may be one it names');
  t.deepEqual(
    new MetadataStore(dir).readAllLayers().map((r) => r.id),
    ['a'],
  );
});

/** The paths unlinkSync is called with from now until the test ends (node:fs patched, ESM bindings synced). */
function unlinksFrom(t: { teardown(f: () => void): void }): string[] {
  const calls: string[] = [];
  const original = fs.unlinkSync;
  fs.unlinkSync = (path: fs.PathLike) => {
    calls.push(String(path));
    original(path);
  };
  syncBuiltinESMExports();
  t.teardown(() => {
    fs.unlinkSync = original;
    syncBuiltinESMExports();
  });
  return calls;
}

test.serial('fold unlinks the files of removed layers, and no file for layers made and removed within one log', (t) => {
  const { dir, store } = home(t);
  store.writeLayer(record('kept', 1));
  store.writeLayer(record('gone', 2));
  store.fold();
  store.close();
  const reopened = new MetadataStore(dir);
  t.is(reopened.readAllLayers().length, 2, 'the scan lists the two journal files');
  const unlinked = unlinksFrom(t);
  for (let i = 0; i < 20; i++) {
    reopened.writeLayer(record(`brief${i}`, 10 + i));
    reopened.removeLayer(`brief${i}`);
  }
  reopened.removeLayer('gone');
  t.true(reopened.fold());
  t.deepEqual(layerFiles(dir), ['kept.layer.json']);
  t.deepEqual(
    unlinked.map((p) => basename(p)),
    ['gone.layer.json', 'transactions.log'],
    'one unlink for the file that existed, one for the folded log, none for the 20 brief layers',
  );
  // A file written by a fold is known too: removing that layer later unlinks it.
  reopened.writeLayer(record('later', 40));
  reopened.fold();
  reopened.removeLayer('later');
  reopened.fold();
  t.deepEqual(layerFiles(dir), ['kept.layer.json']);
  reopened.close();
  t.deepEqual(
    new MetadataStore(dir).readAllLayers().map((r) => r.id),
    ['kept'],
  );
});

test('a pack cut short at a line boundary is damaged, not smaller; repair keeps a copy and holds its thin ids back', (t) => {
  const { dir, store } = home(t);
  for (const r of [record('a', 1), record('b', 2), record('c', 3)]) store.writeLayer(r);
  store.fold();
  store.readAllLayers();
  t.true(store.compactIfLong(1));
  store.close();
  const full = readFileSync(join(dir, PACK), 'utf8');
  t.is(full.split('\n').length, 5, 'a header line, three entries, the final newline');
  const cut = `${full.split('\n').slice(0, 3).join('\n')}\n`; // c's entry lost with its newline
  writeFileSync(join(dir, PACK), cut);

  const reopened = new MetadataStore(dir);
  const scan = reopened.scanLayers();
  t.deepEqual(
    scan.records.map((r) => r.id),
    ['a', 'b'],
  );
  t.deepEqual(
    scan.damaged.map((d) => [d.name, d.claimedDeviceId]),
    [['layers.pack#count', undefined]],
  );
  t.regex(scan.damaged[0]!.error.message, /says 3 entries and 2 follow \(cut short/);
  const error = t.throws(() => reopened.readAllLayers());
  t.true(error instanceof MetadataError, String(error));

  const copy = reopened.quarantine('layers.pack#count');
  t.is(readFileSync(copy, 'utf8'), cut, 'the pack as it was goes to the quarantine');
  t.deepEqual(reopened.quarantinedThinIds(), [undefined], 'naming no readable thin id: every leaked id is held back');
  const after = new MetadataStore(dir).scanLayers();
  t.deepEqual(after.damaged, [], 'the header counts the two entries left');
  t.deepEqual(
    after.records.map((r) => r.id),
    ['a', 'b'],
  );
});

test('a pack written before the header loads with nothing to count against', (t) => {
  const { dir, store } = home(t);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, PACK), `${encodeEntry(record('a', 1))}\n`);
  const scan = store.scanLayers();
  t.deepEqual(scan.damaged, []);
  t.deepEqual(
    scan.records.map((r) => r.id),
    ['a'],
  );
});

test('a size that is no whole number of sectors, or past u64 sectors, is damage naming the file and size, not a record', (t) => {
  const { dir, store } = home(t);
  mkdirSync(dir, { recursive: true });
  const tooBig = String(((1n << 64n) - 1n) * 512n + 512n); // one sector past the kernel's u64 length
  const sizes = [
    ['odd', '513'],
    ['tiny', '1'],
    ['huge', tooBig],
    ['ok', String(((1n << 64n) - 1n) * 512n)],
  ];
  for (const [i, [id, size]] of sizes.entries())
    writeFileSync(join(dir, `${id}.layer.json`), JSON.stringify(record(id!, i + 1, { size: size! })));
  const scan = store.scanLayers();
  t.deepEqual(
    scan.records.map((r) => r.id),
    ['ok'],
  );
  t.deepEqual(
    scan.damaged.map((d) => [d.name, d.error.field]),
    [
      ['huge.layer.json', 'size'],
      ['odd.layer.json', 'size'],
      ['tiny.layer.json', 'size'],
    ],
  );
  const state = { formatVersion: 1, nextDeviceId: 2, transactionId: '1' };
  const base = { deviceId: 1, size: '1000', filesystem: 'ext4', filesystemUuid: 'u' };
  writeFileSync(join(dir, 'deviceset.json'), JSON.stringify({ ...state, base }));
  const error = t.throws(() => store.readState(), { instanceOf: MetadataError });
  t.is(error!.field, 'base.size');
  t.true(error!.message.includes('deviceset.json'), error!.message);
});

test("a record of layer 'pool' (the pool's own dm name) is damage naming the file and id, in the journal and the pack", (t) => {
  const { dir, store } = home(t);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'pool.layer.json'), JSON.stringify(record('pool', 3, { deferredDelete: true })));
  writeFileSync(join(dir, PACK), `${encodeEntry(record('pool', 4))}\n`);
  const scan = store.scanLayers();
  t.deepEqual(scan.records, []);
  t.deepEqual(
    scan.damaged.map((d) => [d.name, d.error.field]),
    [
      ['layers.pack#1', 'entry 1 (layer pool) id'],
      ['pool.layer.json', 'id'],
    ],
  );
});

test('stale temp files go at init; a directory named *.tmp is left alone, not a raw EISDIR that stops every open', (t) => {
  const { dir, store } = home(t);
  mkdirSync(join(dir, 'saved.tmp', 'inside'), { recursive: true });
  writeFileSync(join(dir, 'saved.tmp', 'inside', 'keep'), "not the driver's");
  writeFileSync(join(dir, 'deviceset.json.4242.tmp'), '{"half":');
  writeFileSync(join(dir, 'a.layer.json.17.tmp'), '');
  t.notThrows(() => store.removeStaleTempFiles());
  t.deepEqual(readdirSync(dir).sort(), ['saved.tmp']);
  t.is(readFileSync(join(dir, 'saved.tmp', 'inside', 'keep'), 'utf8'), "not the driver's");
});
