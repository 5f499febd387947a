// The layer views LayerRecords hands out (Driver.list, Driver.metadata): shared while nothing
// changes, new as soon as the record or the mount state does, never a stale or removed layer.
import test from 'ava';
import { LayerRecords, type ViewContext } from '../../src/driver/layer-records.js';
import { BASE_LAYER, type LayerRecord, type MetadataStore } from '../../src/driver/metadata-store.js';

const record = (id: string, deviceId: number, extra: Partial<LayerRecord> = {}): LayerRecord => ({
  id,
  parent: null,
  deviceId,
  size: '1024',
  transactionId: '1',
  ...extra,
});

/** A table whose writes go nowhere (only the in-memory table is under test). */
function table(): { layers: LayerRecords; mounted: Set<string>; context: ViewContext } {
  const store = { writeLayer: () => undefined } as unknown as MetadataStore;
  const layers = new LayerRecords(store);
  const mounted = new Set<string>();
  return { layers, mounted, context: { isMounted: (id) => mounted.has(id), deviceName: (id) => `prefix-${id}` } };
}

test('views are built once and shared until the table changes', (t) => {
  const { layers, context } = table();
  layers.set(BASE_LAYER, record(BASE_LAYER, 1));
  layers.set('a', record('a', 2, { meta: { k: 'v' } }));
  layers.set('b', record('b', 3, { parent: 'a' }));
  const first = layers.views(context);
  t.deepEqual(
    first.map((v) => [v.id, v.parent, v.deviceId, v.size, v.deviceName, v.mounted, v.activated, v.meta]),
    [
      ['a', null, 2, 1024n, 'prefix-a', false, false, { k: 'v' }],
      ['b', 'a', 3, 1024n, 'prefix-b', false, false, undefined],
    ],
  );
  const second = layers.views(context);
  t.not(second, first, 'each call returns its own array');
  t.is(second[0], first[0], 'the same view object while nothing changed');
  t.is(layers.metadata('b', context), first[1]);
  t.true(Object.isFrozen(first[0]));
  t.throws(() => {
    (first[0] as { mounted: boolean }).mounted = true;
  });
  second.pop(); // a caller's array is its own
  t.is(layers.views(context).length, 2);
});

test('a changed record, a mount, a removal and a deferred deletion each show at once', (t) => {
  const { layers, mounted, context } = table();
  layers.set('a', record('a', 2));
  layers.set('b', record('b', 3));
  const [a0, b0] = layers.views(context);

  layers.update(layers.get('a')!, { activated: true, size: '2048' });
  const [a1, b1] = layers.views(context);
  t.not(a1, a0);
  t.true(a1!.activated);
  t.is(a1!.size, 2048n);
  t.is(b1, b0, 'an unchanged layer keeps its view');

  mounted.add('b'); // get(): the table does not change, the mount state does
  const [a2, b2] = layers.views(context);
  t.is(a2, a1);
  t.true(b2!.mounted);
  t.true(layers.metadata('b', context)!.mounted);
  mounted.delete('b');
  t.false(layers.views(context)[1]!.mounted);
  t.false(layers.metadata('b', context)!.mounted);

  layers.update(layers.get('b')!, { deferredDelete: true });
  t.deepEqual(
    layers.views(context).map((v) => v.id),
    ['a'],
  );
  t.is(layers.metadata('b', context), undefined);

  layers.delete('a');
  t.deepEqual(layers.views(context), []);
  t.is(layers.metadata('a', context), undefined);
  layers.set('a', record('a', 9)); // the same id again, another thin id
  t.is(layers.views(context)[0]!.deviceId, 9);
  layers.clear();
  t.deepEqual(layers.views(context), []);
});
