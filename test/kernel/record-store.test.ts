// The packed record store through the Driver on a real pool (issue 16): a home whose records
// were compacted into layers.pack keeps every layer and its data; a removed packed layer stays
// removed across inits; a damaged pack entry makes init refuse with a MetadataError naming the
// pack, the entry and the field, and check --repair quarantines that entry alone, deletes no
// thin id (the entry names it), and is idempotent; a pack that lost its last line is damaged too,
// and repair keeps the lost layer's thin id (and so its data) where the count showed the loss.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { encodeEntry, PACK } from '../../src/driver/layer-pack.js';
import { type LayerRecord, MetadataStore } from '../../src/driver/metadata-store.js';
import { MetadataError } from '../../src/errors.js';
import { assertNothingLeaked, newHome, SMALL, sha, show } from './driver-helpers.js';
import { useDriverBed } from './helpers.js';

useDriverBed();

/** Compacts the home's journal into the pack, as init does once the journal is long. */
function compact(home: string): void {
  const store = new MetadataStore(join(home, 'metadata'));
  store.readAllLayers();
  if (!store.compactIfLong(1)) throw new Error('nothing compacted');
  store.close();
}

test.serial('a packed home: layers, data, removal and re-creation survive inits', async (t) => {
  const home = newHome('pack');
  const options = { home, ...SMALL };
  let driver = await Driver.init(options);
  t.teardown(() => driver.cleanup());
  const files = new Map<string, string>();
  for (const [id, parent] of [
    ['a', undefined],
    ['b', 'a'],
    ['c', undefined],
  ] as const) {
    await driver.create(id, parent, { meta: { made: id } });
    const data = randomBytes(64 << 10);
    writeFileSync(join(await driver.get(id), `${id}.bin`), data);
    files.set(id, sha(data));
    await driver.put(id);
  }
  const before = (await driver.list()).map((l) => [l.id, l.parent, l.deviceId, l.meta]);
  await driver.close();
  compact(home);
  t.deepEqual(
    readdirSync(join(home, 'metadata'))
      .filter((n) => n.endsWith('.layer.json'))
      .sort(),
    [],
    'every record is in the pack',
  );

  driver = await Driver.init(options);
  t.deepEqual(
    (await driver.list()).map((l) => [l.id, l.parent, l.deviceId, l.meta]),
    before,
  );
  for (const [id, hash] of files) {
    t.is(sha(readFileSync(join(await driver.get(id), `${id}.bin`))), hash, `layer ${id}'s file`);
    await driver.put(id);
  }
  await driver.remove('c');
  await driver.close(); // folds transactions.log into the files
  t.true(existsSync(join(home, 'metadata', 'c.layer.json')), "c's tombstone hides its pack entry");

  driver = await Driver.init(options);
  t.false(await driver.exists('c'), 'a removed packed layer stays removed');
  await driver.create('c');
  t.true(await driver.exists('c'), 're-created over its tombstone');
  const report = await driver.check();
  t.true(report.clean, show(report));
  await driver.cleanup();
  assertNothingLeaked(t);
});

test.serial(
  'a damaged pack entry: init names the pack, entry and field; repair quarantines the entry alone and deletes no thin id',
  async (t) => {
    const home = newHome('pack-damaged');
    const options = { home, ...SMALL };
    let driver = await Driver.init(options);
    t.teardown(() => driver.cleanup());
    for (const id of ['a', 'b', 'c']) await driver.create(id);
    const bThinId = (await driver.metadata('b')).deviceId;
    await driver.close();
    compact(home);

    // b's entry altered as a hand edit would (its checksum recomputed, a field of the wrong type).
    const pack = join(home, 'metadata', PACK);
    const lines = readFileSync(pack, 'utf8').split('\n');
    const line = lines.findIndex((l) => l.includes('"id":"b"'));
    const record = JSON.parse(lines[line]!.slice(9)) as Record<string, unknown>;
    lines[line] = encodeEntry({ ...record, size: -5 } as unknown as LayerRecord);
    writeFileSync(pack, lines.join('\n'));

    const error = await t.throwsAsync(Driver.init(options));
    t.true(error instanceof MetadataError, String(error));
    t.is((error as MetadataError).file, pack);
    t.is((error as MetadataError).field, `entry ${line + 1} (layer b) size`);

    const first = await Driver.check(options, { repair: true });
    t.is(first.quarantined.length, 1, first.repairs.join('\n'));
    t.deepEqual(first.leakedThinIds, [bThinId], "b's thin id shows as leaked ...");
    t.true(
      first.skipped.some((s) => s.startsWith(`leaked thin id ${bThinId}:`)),
      '... and is left in place: the quarantined entry names it',
    );
    const second = await Driver.check(options, { repair: true });
    t.deepEqual(second.repairs, [], 'a second repair changes nothing');
    t.deepEqual(second.leakedThinIds, [bThinId]);

    driver = await Driver.init(options);
    t.deepEqual((await driver.list()).map((l) => l.id).sort(), ['a', 'c'], 'the other entries stay');
    await driver.cleanup();
    assertNothingLeaked(t);
  },
);

test.serial(
  "a pack cut short by its last line: init refuses, repair keeps the lost layer's thin id and data",
  async (t) => {
    const home = newHome('pack-cut');
    const options = { home, ...SMALL };
    let driver = await Driver.init(options);
    t.teardown(() => driver.cleanup());
    for (const id of ['a', 'b', 'c']) await driver.create(id);
    writeFileSync(join(await driver.get('c'), 'c.txt'), 'kept');
    await driver.put('c');
    const cThinId = (await driver.metadata('c')).deviceId;
    await driver.close();
    compact(home);

    const pack = join(home, 'metadata', PACK);
    const text = readFileSync(pack, 'utf8');
    const lines = text.split('\n');
    const lost = lines[lines.length - 2]!; // the last entry (the text ends with a newline)
    t.true(lost.includes('"id":"c"'), 'c is the last entry');
    writeFileSync(pack, text.slice(0, text.length - lost.length - 1));

    const error = await t.throwsAsync(Driver.init(options));
    t.true(error instanceof MetadataError, String(error));
    t.is((error as MetadataError).field, 'header', String(error));

    const repaired = await Driver.check(options, { repair: true });
    t.deepEqual(repaired.leakedThinIds, [cThinId], show(repaired));
    t.true(
      repaired.skipped.some((s) => s.startsWith(`leaked thin id ${cThinId}:`)),
      `c's thin id is left in place: ${show(repaired)}`,
    );
    t.false(repaired.repairs.includes(`deleted leaked thin id ${cThinId}`));
    const again = await Driver.check(options, { repair: true });
    t.deepEqual(again.repairs, [], 'a second repair changes nothing');

    // Putting the lost line back (from a backup, or by hand) brings c back with its data.
    driver = await Driver.init(options);
    t.deepEqual((await driver.list()).map((l) => l.id).sort(), ['a', 'b']);
    await driver.close();
    writeFileSync(join(home, 'metadata', 'c.layer.json'), `${JSON.stringify(JSON.parse(lost.slice(9)))}\n`);
    driver = await Driver.init(options);
    t.is(readFileSync(join(await driver.get('c'), 'c.txt'), 'utf8'), 'kept', "c's data survived the repair");
    await driver.put('c');
    await driver.cleanup();
    assertNothingLeaked(t);
  },
);
