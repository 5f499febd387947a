// containerd's filter syntax (src/containerd/filters.ts) and the snapshot record checks
// (src/containerd/records.ts), without a kernel.
import test from 'ava';
import { parseFilters } from '../../src/containerd/filters.js';
import { SnapshotError } from '../../src/containerd/errors.js';
import {
  assertKey,
  checkLabels,
  fromLayer,
  snapshotField,
  toMeta,
  type SnapshotInfo,
} from '../../src/containerd/records.js';

const info = (over: Partial<SnapshotInfo>): SnapshotInfo => ({
  name: 'n',
  parent: '',
  kind: 'active',
  created: 0,
  updated: 0,
  labels: {},
  ...over,
});
const matches = (filters: string[], i: SnapshotInfo): boolean =>
  parseFilters(filters)((path) => snapshotField(i, path));

test('selectors: ==, !=, ~=, presence; comma is AND, several filters OR', (t) => {
  const a = info({
    name: 'sha256:abc',
    parent: 'p',
    kind: 'committed',
    labels: { 'containerd.io/gc.root': 'x', tier: 'base' },
  });
  t.true(matches([], a));
  t.true(matches([''], a), 'an empty filter matches all');
  t.true(matches(['kind==committed'], a));
  t.false(matches(['kind==active'], a));
  t.true(matches(['kind!=active'], a));
  t.true(matches(['name~=^sha256:'], a));
  t.false(matches(['name~=^md5:'], a));
  t.true(matches(['labels."containerd.io/gc.root"'], a));
  t.false(matches(['labels.missing'], a));
  t.true(matches(['labels."containerd.io/gc.root"==x'], a));
  t.true(matches(['labels.tier=="base"'], a));
  t.true(matches(['labels.tier==`base`'], a));
  t.true(matches(['kind==committed, parent==p'], a), 'spaces around the comma');
  t.false(matches(['kind==committed,parent==q'], a));
  t.true(matches(['kind==view', 'parent==p'], a));
  t.false(matches(['kind==view', 'parent==q'], a));
  t.true(matches(['parent'], a), 'presence of a non-empty field');
  t.false(matches(['parent'], info({ parent: '' })));
  t.true(matches(['labels.a=="x,y"'], info({ labels: { a: 'x,y' } })), 'a comma inside quotes is part of the value');
  t.true(matches(['labels.a=="q\\"uote"'], info({ labels: { a: 'q"uote' } })), 'escaped quote');
});

test('malformed filters are INVALID_ARGUMENT errors naming the filter', (t) => {
  for (const bad of ['kind==', '==x', 'labels.', 'name~=(', 'labels."open', 'kind==a,', 'a b']) {
    const error = t.throws(() => parseFilters([bad]), { instanceOf: SnapshotError }, bad);
    t.is(error?.kind, 'INVALID_ARGUMENT', bad);
    t.true(error?.message.includes(JSON.stringify(bad)) ?? false, `${bad}: ${error?.message}`);
  }
});

test("keys and labels are checked against containerd's limits", (t) => {
  t.notThrows(() => assertKey(`default/12/sha256:${'a'.repeat(64)}`, 'key'));
  for (const bad of ['', 'a\0b', 'x'.repeat(4097), 7])
    t.throws(() => assertKey(bad, 'key'), { instanceOf: SnapshotError });
  t.deepEqual(checkLabels({ a: 'b' }, 'w'), { a: 'b' });
  t.throws(() => checkLabels({ a: 'x'.repeat(4096) }, 'w'), { message: /longer than 4096/ });
  t.throws(() => checkLabels({ '': 'x' }, 'w'), { message: /empty key/ });
  t.throws(() => checkLabels(Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`k${i}`, 'v'])), 'w'), {
    message: /257 labels/,
  });
});

test('snapshot records: what toMeta writes fromLayer reads back; a damaged one is an error naming the layer', (t) => {
  const snapshot = {
    ...info({ name: 'x', parent: 'p', kind: 'committed', labels: { a: 'b' } }),
    layerId: 'ctrd-4',
    mappedBytes: 123n,
  };
  const layer = {
    id: 'ctrd-4',
    parent: 'ctrd-3',
    deviceId: 9,
    size: 1n,
    deviceName: 'd',
    mounted: false,
    activated: false,
    meta: toMeta(snapshot),
  };
  t.deepEqual(fromLayer(layer), snapshot);
  t.is(fromLayer({ ...layer, meta: undefined }), undefined, 'a plain layer holds no snapshot');
  for (const damaged of [
    null,
    5,
    { v: 2 },
    { ...(toMeta(snapshot).containerd as object), kind: 'weird' },
    { ...(toMeta(snapshot).containerd as object), labels: { a: 1 } },
    { ...(toMeta(snapshot).containerd as object), mappedBytes: '-1' },
  ]) {
    t.throws(
      () => fromLayer({ ...layer, meta: { containerd: damaged } }),
      { message: /layer ctrd-4/ },
      JSON.stringify(damaged),
    );
  }
});

test('~= patterns are Go regexps, as containerd compiles them: RE2 syntax, RE2 refusals', (t) => {
  const digits = info({ name: 'sha256:0123', labels: { l: 'x' } });
  // POSIX classes and named groups are Go syntax; JavaScript reads [[:digit:]] as a set of ':digt['.
  t.true(matches(['name~=^sha256:[[:digit:]]+$'], digits), '[[:digit:]] is a POSIX class');
  t.true(matches(['name~=^(?P<algo>sha256):'], digits), '(?P<name>…) is a named group');
  t.true(matches(['name~=\\Asha256'], digits), '\\A anchors the start');
  t.true(matches(['name~=^sha256:[0-9a-f]{4}$'], digits), 'counted repetitions');
  t.true(matches(['name~=1'], digits), 'a match anywhere, as Go’s MatchString');
  for (const bad of ['name~=(a)\\1', 'name~=(?=a)a', 'name~=(?<=a)b', 'name~=[', 'name~=a{1001}']) {
    const error = t.throws(() => parseFilters([bad]), { instanceOf: SnapshotError }, bad);
    t.is(error?.kind, 'INVALID_ARGUMENT', bad);
    t.regex(error?.message ?? '', /is not a regular expression \(error parsing regexp/, bad);
  }
});

test('a ~= pattern that a backtracking engine cannot finish is answered: RE2 matches in linear time', (t) => {
  // (a+)+$ against n a's and a b takes a backtracking engine ~2^n steps: at 4,096 it never ends,
  // and the server's one thread with it. No timing here: the old engine fails by not answering.
  const long = info({ labels: { l: `${'a'.repeat(4096)}b` } });
  t.false(matches(['labels.l~=(a+)+$'], long));
  t.false(
    matches(['labels.l~="(a{1,20}){1,20}$"'], long),
    'nested counted repetitions (quoted: a comma ends a filter)',
  );
  t.true(matches(['labels.l~=^(a+)+b$'], long));
});
