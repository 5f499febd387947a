// The DeviceSet's layer table keeps its thin-id index in step with every change.
import test from 'ava';
import { LayerTable } from '../../src/driver/layer-table.js';
import type { LayerRecord } from '../../src/driver/metadata-store.js';

const record = (id: string, deviceId: number): LayerRecord => ({
  id,
  parent: null,
  deviceId,
  size: '1024',
  transactionId: '1',
});

test('ownsThinId follows set, replace, delete and clear', (t) => {
  const table = new LayerTable();
  table.set('a', record('a', 1)).set('b', record('b', 2));
  t.true(table.ownsThinId(1));
  t.true(table.ownsThinId(2));
  t.false(table.ownsThinId(3));
  table.set('a', record('a', 3)); // a layer's record replaced (e.g. grown) with another thin id
  t.false(table.ownsThinId(1));
  t.true(table.ownsThinId(3));
  t.true(table.delete('b'));
  t.false(table.ownsThinId(2));
  t.false(table.delete('b'));
  t.is(table.size, 1);
  table.clear();
  t.false(table.ownsThinId(3));
  t.is(table.size, 0);
});
