// transactions.log on a real filesystem: an intent read back as the open transaction by the next
// process, the done line that settles it, the fold into the layer files, a torn last line cut
// off, a damaged line named by file, line and field, a crash between the fold and the unlink,
// and a transaction.json from before the log finished through it.
import test from 'ava';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { MetadataError } from '../../src/errors.js';
import {
  type DeviceSetState,
  FOLD_AT,
  type LayerRecord,
  MetadataStore,
  type OpenTransaction,
} from '../../src/driver/metadata-store.js';
import { LOG } from '../../src/driver/transaction-log.js';

const record = (id: string, deviceId: number): LayerRecord => ({
  id,
  parent: null,
  deviceId,
  size: '1048576',
  transactionId: String(deviceId + 1),
});
const state = (transactionId: number, nextDeviceId: number): DeviceSetState => ({
  formatVersion: 1,
  nextDeviceId,
  transactionId: String(transactionId),
});
const intent = (r: LayerRecord): OpenTransaction => ({
  transactionId: r.transactionId,
  op: 'create',
  layerId: r.id,
  deviceId: r.deviceId,
  record: r,
});

function home(t: { teardown(f: () => void): void }): { dir: string; store: MetadataStore } {
  const root = mkdtempSync(join(tmpdir(), 'dm-log-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, 'metadata');
  return { dir, store: new MetadataStore(dir) };
}

/** One create through the store as transaction.ts makes it: intent, then done. */
function create(store: MetadataStore, r: LayerRecord): void {
  store.openTransaction(intent(r));
  store.finishTransaction({ write: r }, state(Number(r.transactionId), r.deviceId + 1));
}

const files = (dir: string): string[] => readdirSync(dir).sort();

test('an intent is the open transaction of the next process; its done line settles it, records and state over the files', (t) => {
  const { dir, store } = home(t);
  store.writeState(state(1, 1));
  store.openTransaction(intent(record('a', 1)));
  t.deepEqual(files(dir), [LOG], 'one file: the log');
  t.deepEqual(new MetadataStore(dir).readTransaction(), intent(record('a', 1)), 'read back by a new store');
  store.finishTransaction({ write: record('a', 1) }, state(2, 2));
  const next = new MetadataStore(dir);
  t.is(next.readTransaction(), undefined);
  t.deepEqual(next.readLayer('a'), record('a', 1));
  t.deepEqual(next.readState(), state(2, 2));
  t.deepEqual(next.readAllLayers(), [record('a', 1)]);
  // A delete: its done line removes the record.
  store.openTransaction({ transactionId: '3', op: 'delete', layerId: 'a', deviceId: 1 });
  store.finishTransaction({ remove: 'a' }, state(3, 2));
  t.is(new MetadataStore(dir).readLayer('a'), undefined);
  t.deepEqual(new MetadataStore(dir).readAllLayers(), []);
});

test('fold writes the layer files and deviceset.json, then the log goes; close folds what this process logged', (t) => {
  const { dir, store } = home(t);
  store.writeState(state(1, 1));
  create(store, record('a', 1));
  create(store, record('b', 2));
  store.openTransaction({ transactionId: '4', op: 'delete', layerId: 'a', deviceId: 1 });
  store.finishTransaction({ remove: 'a' }, state(4, 3));
  store.close();
  t.deepEqual(
    files(dir),
    ['b.layer.json', 'deviceset.json'],
    'folded at close, a created and deleted layer leaves nothing',
  );
  t.deepEqual(JSON.parse(readFileSync(join(dir, 'b.layer.json'), 'utf8')), record('b', 2));
  t.deepEqual(JSON.parse(readFileSync(join(dir, 'deviceset.json'), 'utf8')), state(4, 3));
  // A store that only reads a log (check's inspect mode) leaves it for the next init.
  const writer = new MetadataStore(dir);
  create(writer, record('c', 5));
  copyFileSync(join(dir, LOG), join(dir, 'kept'));
  writer.close();
  copyFileSync(join(dir, 'kept'), join(dir, LOG));
  rmSync(join(dir, 'kept'));
  const reader = new MetadataStore(dir);
  t.deepEqual(
    reader.readAllLayers().map((r) => r.id),
    ['b', 'c'],
  );
  reader.close();
  t.true(existsSync(join(dir, LOG)), 'a log only read stays');
});

test('a crash after the fold wrote the files and before the log went: the log repeats them, same records', (t) => {
  const { dir, store } = home(t);
  store.writeState(state(1, 1));
  create(store, record('a', 1));
  store.removeLayer('a');
  create(store, record('b', 2));
  const logged = readFileSync(join(dir, LOG));
  const before = new MetadataStore(dir).readAllLayers();
  t.true(store.fold());
  writeFileSync(join(dir, LOG), logged); // the unlink lost
  const after = new MetadataStore(dir);
  t.deepEqual(after.readAllLayers(), before);
  t.deepEqual(after.readState(), state(3, 3));
  t.true(after.fold(), 'and folds again to the same files');
  t.deepEqual(new MetadataStore(dir).readAllLayers(), before);
});

test('a torn last line (an append cut short) is not read, and is cut off before the next append', (t) => {
  const { dir, store } = home(t);
  store.writeState(state(1, 1));
  create(store, record('a', 1));
  store.close(); // folded: a's file and deviceset.json
  const next = new MetadataStore(dir);
  next.openTransaction(intent(record('b', 2)));
  const whole = readFileSync(join(dir, LOG), 'utf8');
  writeFileSync(join(dir, LOG), whole.slice(0, whole.length - 20)); // the intent's write torn
  const after = new MetadataStore(dir);
  t.is(after.readTransaction(), undefined, 'a torn intent was never acted on');
  t.deepEqual(
    after.readAllLayers().map((r) => r.id),
    ['a'],
  );
  create(after, record('c', 3));
  t.is(readFileSync(join(dir, LOG), 'utf8').split('\n').length, 3, 'the torn bytes went; two whole lines follow');
  t.deepEqual(
    new MetadataStore(dir).readAllLayers().map((r) => r.id),
    ['a', 'c'],
  );
});

test('a damaged line is a MetadataError naming the log, the line and the field', (t) => {
  const { dir, store } = home(t);
  store.writeState(state(1, 1));
  create(store, record('a', 1));
  const lines = readFileSync(join(dir, LOG), 'utf8').split('\n');
  // Line 2 (a's intent) with one digit of its thin id changed: the checksum catches it.
  writeFileSync(join(dir, LOG), [lines[0], lines[1]!.replace('"deviceId":1', '"deviceId":7'), lines[2], ''].join('\n'));
  const altered = t.throws(() => new MetadataStore(dir).readAllLayers(), { instanceOf: MetadataError });
  t.is(altered?.file, join(dir, LOG));
  t.is(altered?.field, 'line 2');
  t.regex(altered?.message ?? '', /checksum/);
  // A line whose checksum holds but whose record does not validate names the field.
  const bad = { record: { ...record('x', 9), deviceId: 'nine' } };
  const json = JSON.stringify(bad);
  writeFileSync(
    join(dir, LOG),
    [lines[0], lines[1], lines[2], `${crc32(json).toString(16).padStart(8, '0')} ${json}`, ''].join('\n'),
  );
  const invalid = t.throws(() => new MetadataStore(dir).readLayer('a'), { instanceOf: MetadataError });
  t.is(invalid?.field, 'line 4 deviceId');
  t.regex(invalid?.message ?? '', /"nine" is not a thin id/);
});

test("an intent whose record names another thin id than the intent's is damage, not recovered", (t) => {
  const { dir, store } = home(t);
  store.writeState(state(1, 1));
  const entry = { intent: { ...intent(record('a', 1)), deviceId: 5 } };
  const json = JSON.stringify(entry);
  writeFileSync(join(dir, LOG), `${crc32(json).toString(16).padStart(8, '0')} ${json}\n`, { flag: 'a' });
  const error = t.throws(() => new MetadataStore(dir).readTransaction(), { instanceOf: MetadataError });
  t.is(error?.file, join(dir, LOG));
  t.is(error?.field, 'line 2 record.deviceId');
  t.regex(error?.message ?? '', /1 is not the intent's thin id 5/);
});

test('an intent to delete the base device is damage, never recovered (the driver never writes one)', (t) => {
  const { dir, store } = home(t);
  store.writeState(state(1, 2));
  const entry = { intent: { transactionId: '2', op: 'delete', layerId: '.base', deviceId: 1 } };
  const json = JSON.stringify(entry);
  writeFileSync(join(dir, LOG), `${crc32(json).toString(16).padStart(8, '0')} ${json}\n`, { flag: 'a' });
  const error = t.throws(() => new MetadataStore(dir).readTransaction(), { instanceOf: MetadataError });
  t.is(error?.file, join(dir, LOG));
  t.is(error?.field, 'line 2 layerId');
  t.regex(error?.message ?? '', /base device/);
});

test('fold waits while an intent is open; the log folds by itself once it is long', (t) => {
  const { dir, store } = home(t);
  store.writeState(state(1, 1));
  store.openTransaction(intent(record('a', 1)));
  t.false(store.fold(), 'an open intent is for recovery to settle');
  store.close();
  t.true(existsSync(join(dir, LOG)), 'and stays for the next init');
  const next = new MetadataStore(dir);
  next.abandonTransaction(next.readTransaction()!);
  t.true(next.fold());
  t.deepEqual(files(dir), ['deviceset.json']);
  let serial = 1;
  while (existsSync(join(dir, LOG)) || serial === 1) create(next, record(`L${serial}`, serial++));
  t.is(serial - 1, FOLD_AT / 2, 'two lines per create: folded at FOLD_AT lines');
  t.is(files(dir).filter((n) => n.endsWith('.layer.json')).length, FOLD_AT / 2);
});

test('a transaction.json from before the log is the open transaction, and goes once finished through the log', (t) => {
  const { dir, store } = home(t);
  writeFileSync(join(dir, 'deviceset.json'), JSON.stringify(state(1, 1)));
  writeFileSync(join(dir, 'transaction.json'), JSON.stringify(intent(record('a', 1))));
  const open = store.readTransaction();
  t.deepEqual(open, intent(record('a', 1)));
  store.finishTransaction({ write: record('a', 1) }, state(2, 2));
  t.false(existsSync(join(dir, 'transaction.json')));
  const next = new MetadataStore(dir);
  t.is(next.readTransaction(), undefined);
  t.deepEqual(next.readLayer('a'), record('a', 1));
});

test("the log's record of a layer replaces a damaged file of it", (t) => {
  const { dir, store } = home(t);
  writeFileSync(join(dir, 'a.layer.json'), '{"id":"a"');
  t.is(store.scanLayers().damaged.length, 1);
  store.writeLayer(record('a', 1));
  const scan = new MetadataStore(dir).scanLayers();
  t.deepEqual(scan.damaged, []);
  t.deepEqual(scan.records, [record('a', 1)]);
});
