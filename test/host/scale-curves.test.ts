// The scale bench's arithmetic (bench/scale-curves.ts): metadata sizing for N thin devices,
// linearity and the fitted exponent of a curve over several sizes, memory per layer.
import test from 'ava';
import {
  activeCount,
  bytesPerLayer,
  curveShape,
  logLogSlope,
  METADATA_BLOCK,
  metadataBytesFor,
} from '../../bench/scale-curves.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

test('metadataBytesFor: at least one 4 KiB block per thin device plus the mappings, whole MiB', (t) => {
  const empty = metadataBytesFor(0, 8 * GiB, 64 * 1024);
  // 48 bytes per 64 KiB data block of 8 GiB = 6 MiB, plus 25%
  t.is(empty, Math.ceil((6 * MiB * 1.25) / MiB) * MiB);
  const big = metadataBytesFor(100_000, 8 * GiB, 64 * 1024);
  t.true(big - empty >= 100_000 * METADATA_BLOCK, `${big} holds a block per device`);
  t.true(big < 1 * GiB, `${big / MiB} MiB: not wildly oversized`);
  t.is(big % MiB, 0);
  // small pools get the documented 2 MiB floor for the mappings
  t.is(metadataBytesFor(0, 64 * MiB, 64 * 1024), Math.ceil((2 * MiB * 1.25) / MiB) * MiB);
  t.true(metadataBytesFor(10_000, 8 * GiB, 64 * 1024) < metadataBytesFor(100_000, 8 * GiB, 64 * 1024));
});

test('curveShape per item: flat is linear with exponent 1; a step over 1.5x is not', (t) => {
  const flat = curveShape(
    [
      { n: 1000, us: 10 },
      { n: 10_000, us: 11 },
      { n: 100_000, us: 12 },
    ],
    'per item',
  );
  t.true(flat.linear);
  t.deepEqual(flat.steps, [1.1, 1.09]);
  t.is(flat.growth, 1.2);
  t.true(Math.abs(flat.exponent - 1.04) < 0.01, `exponent ${flat.exponent}`);

  // quadratic total: per item grows 10x per decade
  const quadratic = curveShape(
    [
      { n: 1000, us: 1 },
      { n: 10_000, us: 10 },
      { n: 100_000, us: 100 },
    ],
    'per item',
  );
  t.false(quadratic.linear);
  t.is(quadratic.exponent, 2);

  // overall within 1.5x but one step jumps: not linear
  const jump = curveShape(
    [
      { n: 1000, us: 10 },
      { n: 10_000, us: 5 },
      { n: 100_000, us: 14 },
    ],
    'per item',
  );
  t.is(jump.growth, 1.4);
  t.false(jump.linear, 'a 2.8x step between neighbouring sizes');
});

test('curveShape per call: a call may grow with the size, not faster', (t) => {
  const constant = curveShape(
    [
      { n: 1000, us: 100 },
      { n: 100_000, us: 90 },
    ],
    'per call',
  );
  t.true(constant.linear);
  t.true(Math.abs(constant.exponent) < 0.05);
  const proportional = curveShape(
    [
      { n: 1000, us: 100 },
      { n: 100_000, us: 10_000 },
    ],
    'per call',
  );
  t.true(proportional.linear);
  t.is(proportional.exponent, 1);
  const worse = curveShape(
    [
      { n: 1000, us: 100 },
      { n: 10_000, us: 20_000 },
    ],
    'per call',
  );
  t.false(worse.linear);
});

test('curveShape and logLogSlope on degenerate input', (t) => {
  t.deepEqual(curveShape([], 'per item'), { growth: 1, steps: [], exponent: 1, linear: true });
  t.is(curveShape([{ n: 10, us: 0 }], 'per item').growth, 1);
  t.is(logLogSlope([{ n: 10, us: 5 }]), 0);
  t.is(
    logLogSlope([
      { n: 10, us: 0 },
      { n: 100, us: 0 },
    ]),
    0,
  );
});

test('bytesPerLayer and activeCount', (t) => {
  t.is(bytesPerLayer(1000, 1000 + 300_000, 100), 3000);
  t.is(bytesPerLayer(5000, 4000, 100), 0, 'a heap that shrank holds nothing per layer');
  t.is(bytesPerLayer(0, 100, 0), 0);
  t.is(activeCount(50, 2000), 5);
  t.is(activeCount(10_000, 2000), 1000);
  t.is(activeCount(100_000, 2000), 2000);
});
