// The benchmark's guest part in quick mode (few iterations, 50 and 200 layers), run once so it
// cannot rot: every measured op answers with positive finite figures for every implementation
// (the TypeScript path on both FFI backends, the C floor, libdevmapper, dmsetup), the merged
// result evaluates its targets, and the table, JSON and SVG are written. No figure is checked
// against a target here: the test VM is not where latency is measured.
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Stats } from '../../bench/common.js';
import { merge, writeResults, type GuestResult } from '../../bench/report.js';
import { renderTables } from '../../bench/report-tables.js';
import { DeviceMapper } from '../../src/ioctl/device-mapper.js';
import { assertKernelTestBed } from './reference-tools.js';

test.before(() => assertKernelTestBed());

const guestScript = fileURLToPath(new URL('../../bench/guest.js', import.meta.url));

function assertStats(t: { true: (v: boolean, m?: string) => void }, what: string, s: Stats | undefined): void {
  t.true(s !== undefined, `${what}: no figures`);
  if (!s) return;
  t.true(s.n > 0, `${what}: no samples`);
  for (const key of ['min', 'median', 'p99'] as const) {
    t.true(Number.isFinite(s[key]) && s[key] > 0, `${what}: ${key} ${s[key]} is not a positive finite number`);
  }
  t.true(
    s.min <= s.median && s.median <= s.max,
    `${what}: min ${s.min} / median ${s.median} / max ${s.max} out of order`,
  );
}

test('bench guest part, quick mode: latency, lifecycle and scale figures, targets, JSON and SVG', async (t) => {
  t.timeout(400_000);
  const dir = mkdtempSync(join(tmpdir(), 'devmapper-bench-test-'));
  try {
    const out = join(dir, 'guest.json');
    const dm = DeviceMapper.open();
    const before = new Set(dm.list().map((d) => d.name));
    const started = Date.now();
    await new Promise<void>((resolve, reject) => {
      // the snapshotter part (containerd, overlayfs) runs in `npm run bench` only: minutes, and the overlay module
      execFile(
        process.execPath,
        [guestScript, '--quick', '--only', 'latency,lifecycle,scale', '--out', out],
        { maxBuffer: 64 << 20 },
        (error, _stdout, stderr) => {
          if (error) reject(new Error(`bench guest part failed: ${error.message}\n${stderr.slice(-4000)}`));
          else resolve();
        },
      );
    });
    t.log(`guest part (quick) took ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const guest = JSON.parse(readFileSync(out, 'utf8')) as GuestResult;

    // per-ioctl latency
    const ops = guest.latency!.ops;
    const ids = ops.map((op) => op.id);
    for (const id of [
      'DM_VERSION',
      'DM_DEV_STATUS',
      'DM_TABLE_STATUS/pool',
      'DM_TABLE_STATUS/pool-noflush',
      'DM_TARGET_MSG/create_thin+delete',
      'DM_DEV_SUSPEND/suspend+resume',
      'DM_TABLE_STATUS/pool-noflush/100-thins', // quick mode: 100 thin devices in the pool
      'DM_TABLE_STATUS/pool/100-thins',
    ]) {
      t.true(ids.includes(id), `latency op ${id} missing (have ${ids.join(', ')})`);
    }
    t.is(ids.filter((id) => id.startsWith('DM_LIST_DEVICES/')).length, 3, 'DM_LIST_DEVICES at three device counts');
    t.true(ids.includes('DM_LIST_DEVICES/1000'), 'DM_LIST_DEVICES with 1000 devices');
    for (const op of ops) {
      for (const impl of ['c', 'libdm', 'ffi-rs', 'koffi', 'dmsetup'])
        assertStats(t, `${op.id} ${impl}`, op.impls[impl]);
    }
    const suspend = ops.find((op) => op.id === 'DM_DEV_SUSPEND/suspend+resume')!;
    for (const impl of ['ffi-rs async', 'koffi async']) assertStats(t, `${suspend.id} ${impl}`, suspend.impls[impl]);

    // layer lifecycle
    for (const impl of ['driver ffi-rs', 'driver koffi', 'js floor koffi', 'c', 'c +protocol', 'libdm', 'dmsetup']) {
      const r = guest.lifecycle!.impls[impl];
      assertStats(t, `lifecycle ${impl}`, r?.total);
      for (const phase of ['create', 'get', 'put', 'remove'])
        assertStats(t, `lifecycle ${impl} ${phase}`, r?.phases[phase]);
    }

    // scale
    const scale = guest.scale!;
    t.deepEqual(
      scale.points.map((p) => p.n),
      [50, 200],
    );
    for (const p of scale.points) {
      for (const key of [
        'driverCreate',
        'driverRemove',
        'driverList',
        'readAllLayers',
        'init',
        'activate',
        'thinStatus',
        'deactivate',
        'dmList',
        'poolStatus',
      ] as const) {
        assertStats(t, `scale ${p.n} ${key}`, p[key]);
      }
      assertStats(t, `scale ${p.n} create_thin`, p.fill.message);
    }
    t.true(scale.curves.length >= 10);
    for (const c of scale.curves)
      t.true(
        c.points.every((p) => Number.isFinite(p.us)),
        `curve ${c.id} has a non-finite point`,
      );

    // nothing left behind in the kernel
    try {
      t.deepEqual(
        dm
          .list()
          .map((d) => d.name)
          .filter((name) => !before.has(name)),
        [],
        'the bench removed its devices',
      );
    } finally {
      dm.close();
    }

    // merged, evaluated, written
    const result = merge(
      {
        date: '2026-11-30',
        mode: 'quick',
        backend: 'uml',
        machine: 'test VM',
        totalS: 0,
        loadavg: { start: [0, 0, 0], end: [0, 0, 0] },
      },
      undefined,
      guest,
    );
    const latencyTargets = result.targets.filter((line) => line.id.startsWith('latency:'));
    t.is(latencyTargets.length, ops.length + 1);
    t.true(latencyTargets.every((line) => typeof line.met === 'boolean'));
    t.true(
      result.targets.some((line) => line.id === 'lifecycle:c') &&
        result.targets.some((line) => line.id === 'lifecycle:dmsetup'),
    );
    t.is(
      result.targets.find((line) => line.id === 'scale:init')?.met,
      null,
      'the 10,000-layer target is not evaluated at 200 layers',
    );
    const tables = renderTables(result);
    t.regex(tables, /Per-ioctl latency/);
    t.regex(tables, /Layer lifecycle/);
    t.regex(tables, /^(MET|MISSED) /m);
    const files = writeResults(result, join(dir, 'results'), 'quick');
    const svg = readFileSync(files.svg, 'utf8');
    t.true(svg.startsWith('<svg ') && svg.trimEnd().endsWith('</svg>'));
    t.true(svg.includes('Per-ioctl latency') && svg.includes('Layer lifecycle') && svg.includes('Scale'));
    t.true(existsSync(files.json));
    t.is(
      (JSON.parse(readFileSync(files.json, 'utf8')) as { guest: GuestResult }).guest.latency!.ops.length,
      ops.length,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
