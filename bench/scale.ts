// Scale inside the test kernel: one pool filled with N1, N2, ... thin devices (1,000, 10,000 and
// 100,000; 50 and 200 in quick mode), each a layer of a Driver home. The fill is a scripted fast
// path (a create_thin message and a MetadataStore record per layer, one set_transaction_id at
// the end) timed per item; at each size: Driver.create/remove, Driver.list, Driver.init (its
// metadata load) and the memory it holds per layer, MetadataStore.readAllLayers, and on an
// activated tenth of the devices (at most ACTIVE_CAP: a host runs hundreds to a few thousand
// containers, not 10,000; every layer needs no active device): activation, DM_LIST_DEVICES,
// thin status (of them all, and of the same first 100 at every size, which separates the pool's
// size from the number of active devices), deactivation; and the pool's status.
// Each curve is reported per item; linearity is judged by bench/scale-curves.ts.
import { readFileSync, rmSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { join } from 'node:path';
import { Driver } from '../src/driver/driver.js';
import { BASE_LAYER, MetadataStore, type LayerRecord } from '../src/driver/metadata-store.js';
import type { DriverOptions } from '../src/driver/options.js';
import { DeviceMapper } from '../src/ioctl/device-mapper.js';
import { ThinPool } from '../src/thin/pool.js';
import { ThinDevice } from '../src/thin/thin-device.js';
import { bytes, bytesToSectors } from '../src/thin/units.js';
import { GiB, MiB, phase, progress, since, summarize, timeSync, type Stats } from './common.js';
import { prefillDriverMetadata, transactionId, warmPool } from './pools.js';
import { activeCount, buckets, bytesPerLayer, curves, FIXED_STATUS, metadataBytesFor } from './scale-curves.js';

/** Most devices activated at one size (see the header). */
export const ACTIVE_CAP = 2000;

export interface ScalePoint {
  /** Layers in the home (each with its thin id in the pool), the base device not counted. */
  n: number;
  fill: { from: number; to: number; message: Stats; storeWrite: Stats };
  driverCreate: Stats;
  driverRemove: Stats;
  /** Whole calls. */
  driverList: Stats;
  readAllLayers: Stats;
  init: Stats;
  /** Process memory right after Driver.init at this size (driver open, after a full GC). */
  memory?: MemoryPoint;
  /** Devices activated at this size (a tenth, at most ACTIVE_CAP), and per-device timings on them. */
  active: number;
  activate: Stats;
  thinStatus: Stats;
  /** Every active device's status a second time, right after the first pass. */
  thinStatusWarm?: Stats;
  /** Status of the same first FIXED_STATUS devices at every size (3 passes). */
  thinStatusFixed?: Stats;
  /** dm-bufio's cache (the pool's metadata blocks) after the status passes, from sysfs. */
  bufio?: Record<string, number>;
  deactivate: Stats;
  /** Whole DM_LIST_DEVICES calls with `listed` devices. */
  listed: number;
  dmList: Stats;
  poolStatus: Stats;
  poolStatusFlush: Stats;
}

export interface MemoryPoint {
  /** process.memoryUsage() before Driver.init and with the driver open, after a full GC each. */
  rssBefore: number;
  rssAfter: number;
  heapBefore: number;
  heapAfter: number;
  /** (after - before) / layers; heap is V8's used heap plus external memory (which includes array buffers). */
  rssPerLayer: number;
  heapPerLayer: number;
}

export interface ScaleCurve {
  id: string;
  label: string;
  /** 'per item' (a per-item time) or 'per call' (a single call's time at that size). */
  unit: 'per item' | 'per call';
  points: Array<{ n: number; us: number }>;
  /** value at the largest size / value at the smallest. */
  growth: number;
  /** value at each size / value at the size before; total cost ∝ n^exponent (scale-curves.ts). */
  steps?: number[];
  exponent?: number;
  linear: boolean;
}

export interface ScaleResult {
  sizes: number[];
  initEmpty: Stats;
  points: ScalePoint[];
  /** Median create_thin message time per bucket of the whole fill: x = devices in the pool. */
  fillCurve: Array<{ n: number; us: number }>;
  /** Driver.init minus Driver.init of the same home with no layers, ms (medians). */
  metadataWork: Array<{ n: number; ms: number }>;
  curves: ScaleCurve[];
}

export interface ScaleOptions {
  quick: boolean;
  tmp: string;
  prefix: string;
  sizes?: number[];
}

export async function measureScale(options: ScaleOptions): Promise<ScaleResult> {
  const { quick, prefix } = options;
  const sizes = options.sizes ?? (quick ? [50, 200] : [1000, 10000, 100000]);
  const home = join(options.tmp, 'scale-home');
  // sized for the largest fill, at least as big as before (16 / 128 MiB); the first 128 MiB
  // written with zeros, the rest sparse (tmpfs in the test kernel: only used blocks cost memory)
  const metadataBytes = Math.max(
    quick ? 16 * MiB : 128 * MiB,
    metadataBytesFor(Math.max(...sizes), 8 * GiB, 64 * 1024),
  );
  const driverOptions: DriverOptions = {
    home,
    baseSize: '64M',
    loopDataSize: '8G',
    loopMetadataSize: metadataBytes,
  };
  const probes = quick ? 5 : 40;
  const dm = DeviceMapper.open();
  const messageNs: number[] = [];
  const points: ScalePoint[] = [];
  prefillDriverMetadata(home, metadataBytes, 128 * MiB);
  progress(`scale: sizes ${sizes.join(', ')}, pool metadata ${metadataBytes / MiB} MiB`);
  const gc = exposeGc();

  try {
    const { poolName, initEmpty } = await phase('scale: driver home', async () => {
      const driver = await Driver.init(driverOptions);
      const name = (await driver.status()).poolName;
      await driver.close();
      warmPool(dm, name, quick ? 50 : 1500);
      return { poolName: name, initEmpty: await timeInit(driverOptions, quick ? 2 : 3) };
    });
    const pool = ThinPool.adopt(dm, poolName);
    const store = new MetadataStore(join(home, 'metadata'));
    let layers = 0;

    for (const n of sizes) {
      // the fill, from `layers` to n
      const from = layers;
      const writeNs: number[] = [];
      await phase(`scale: fill to ${n} layers`, () => {
        const state = store.readState()!;
        const base = store.readLayer(BASE_LAYER)!;
        const tid = transactionId(dm, poolName);
        if (String(tid) !== state.transactionId)
          throw new Error(`pool transaction id ${tid} is not the home's ${state.transactionId}`);
        let next = state.nextDeviceId;
        for (; layers < n; layers++) {
          const record: LayerRecord = {
            id: `L${String(layers).padStart(6, '0')}`,
            parent: null,
            deviceId: next++,
            size: base.size,
            transactionId: String(tid + 1n),
          };
          let t = process.hrtime.bigint();
          dm.message(poolName, 0, `create_thin ${record.deviceId}`);
          messageNs.push(since(t));
          t = process.hrtime.bigint();
          store.writeLayer(record);
          writeNs.push(since(t));
          if ((layers + 1) % 2000 === 0) progress(`  ${layers + 1} layers`);
        }
        pool.setTransactionId(tid, tid + 1n);
        store.writeState({ ...state, nextDeviceId: next, transactionId: String(tid + 1n) });
        store.close(); // folds transactions.log into the files before a Driver opens the home
      });

      const reps = quick ? 2 : n >= 50_000 ? 2 : 3;
      const point = await phase(`scale: measurements at ${n} layers`, async () => {
        const memory = await memoryAfterInit(driverOptions, n, gc);
        // Driver.create / remove / list at this size
        const driver = await Driver.init(driverOptions);
        const createNs: number[] = [];
        const removeNs: number[] = [];
        let listNs: number[];
        try {
          for (let j = 0; j < probes; j++) {
            const t = process.hrtime.bigint();
            await driver.create(`probe-${n}-${j}`);
            createNs.push(since(t));
          }
          for (let j = 0; j < probes; j++) {
            const t = process.hrtime.bigint();
            await driver.remove(`probe-${n}-${j}`);
            removeNs.push(since(t));
          }
          listNs = [];
          for (let r = 0; r < reps * 3; r++) {
            const t = process.hrtime.bigint();
            const listed = await driver.list();
            listNs.push(since(t));
            if (listed.length !== n) throw new Error(`Driver.list() gave ${listed.length} layers, expected ${n}`);
          }
        } finally {
          await driver.close();
        }
        const init = await timeInit(driverOptions, reps);
        const readAll = timeSync(reps * 2, () => {
          const records = new MetadataStore(join(home, 'metadata')).readAllLayers();
          if (records.length !== n + 1)
            throw new Error(`readAllLayers gave ${records.length} records, expected ${n + 1}`);
        });

        // a tenth of the devices active
        const active = activeCount(n, ACTIVE_CAP);
        const devices: ThinDevice[] = [];
        const activateNs: number[] = [];
        const statusNs: number[] = [];
        const warmNs: number[] = [];
        const fixedNs: number[] = [];
        const deactivateNs: number[] = [];
        let dmListNs: number[] = [];
        let listedCount = 0;
        try {
          const records = store
            .readAllLayers()
            .filter((r) => r.id !== BASE_LAYER)
            .slice(0, active);
          for (const record of records) {
            const t = process.hrtime.bigint();
            devices.push(
              ThinDevice.activate(pool, {
                name: `${prefix}-sa-${record.deviceId}`,
                id: record.deviceId,
                size: bytesToSectors(bytes(BigInt(record.size))),
              }),
            );
            activateNs.push(since(t));
          }
          dmListNs = timeSync(reps * 5, () => {
            listedCount = dm.list().length;
          });
          for (const device of devices) {
            const t = process.hrtime.bigint();
            dm.status(device.name, { noFlush: true });
            statusNs.push(since(t));
          }
          // the same devices again: their metadata blocks are in dm-bufio's cache now
          for (const device of devices) {
            const t = process.hrtime.bigint();
            dm.status(device.name, { noFlush: true });
            warmNs.push(since(t));
          }
          const fixed = devices.slice(0, FIXED_STATUS);
          for (let r = 0; r < 3; r++)
            for (const device of fixed) {
              const t = process.hrtime.bigint();
              dm.status(device.name, { noFlush: true });
              fixedNs.push(since(t));
            }
        } finally {
          for (const device of devices.splice(0)) {
            const t = process.hrtime.bigint();
            device.deactivate();
            deactivateNs.push(since(t));
          }
        }
        const poolStatus = timeSync(reps * 20, () => dm.status(poolName, { noFlush: true }));
        const poolStatusFlush = timeSync(reps * 10, () => dm.status(poolName));
        const p: ScalePoint = {
          n,
          fill: { from, to: n, message: summarize(messageNs.slice(from, n)), storeWrite: summarize(writeNs) },
          driverCreate: summarize(createNs),
          driverRemove: summarize(removeNs),
          driverList: summarize(listNs),
          readAllLayers: summarize(readAll),
          init: summarize(init),
          memory,
          active,
          activate: summarize(activateNs),
          thinStatus: summarize(statusNs),
          thinStatusWarm: summarize(warmNs),
          thinStatusFixed: summarize(fixedNs),
          bufio: bufioCache(),
          deactivate: summarize(deactivateNs),
          listed: listedCount,
          dmList: summarize(dmListNs),
          poolStatus: summarize(poolStatus),
          poolStatusFlush: summarize(poolStatusFlush),
        };
        return p;
      });
      progress(
        `  at ${n}: create_thin ${point.fill.message.median} µs, Driver.create ${point.driverCreate.median} µs, Driver.init ${(point.init.median / 1000).toFixed(1)} ms, readAllLayers ${(point.readAllLayers.median / 1000).toFixed(1)} ms, thin status ${point.thinStatus.median} / again ${point.thinStatusWarm?.median} µs (first ${FIXED_STATUS}: ${point.thinStatusFixed?.median} µs), ${point.memory?.heapPerLayer} B heap / ${point.memory?.rssPerLayer} B RSS per layer`,
      );
      points.push(point);
    }

    const initEmptyStats = summarize(initEmpty);
    return {
      sizes,
      initEmpty: initEmptyStats,
      points,
      fillCurve: buckets(messageNs, Math.max(1, Math.round(sizes[sizes.length - 1]! / 20))),
      metadataWork: points.map((p) => ({ n: p.n, ms: Math.round(p.init.median - initEmptyStats.median) / 1000 })),
      curves: curves(points, initEmptyStats),
    };
  } finally {
    await phase('scale: clean-up', async () => {
      const driver = await Driver.init(driverOptions);
      await driver.cleanup();
      dm.close();
      rmSync(home, { recursive: true, force: true });
    });
  }
}

/** Times `reps` Driver.init (each followed by close, which leaves the pool active), ns. */
async function timeInit(options: DriverOptions, reps: number): Promise<number[]> {
  const out: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t = process.hrtime.bigint();
    const driver = await Driver.init(options);
    out.push(since(t));
    await driver.close();
  }
  return out;
}

/** dm-bufio's module parameters that describe its cache (bytes, seconds), where sysfs has them. */
function bufioCache(): Record<string, number> {
  const dir = '/sys/module/dm_bufio/parameters';
  const out: Record<string, number> = {};
  for (const name of ['current_allocated_bytes', 'max_cache_size_bytes', 'max_age_seconds', 'peak_allocated_bytes'])
    try {
      out[name] = Number(readFileSync(join(dir, name), 'utf8').trim());
    } catch {
      // not there (built without the parameter or not loaded)
    }
  return out;
}

/** A full-GC function: V8's gc() made callable without --expose-gc on the command line. */
function exposeGc(): () => void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  return () => {
    gc();
    gc();
  };
}

/** Memory the process holds for an open Driver of `n` layers, per layer. */
async function memoryAfterInit(options: DriverOptions, n: number, gc: () => void): Promise<MemoryPoint> {
  const heap = (): number => {
    const m = process.memoryUsage();
    return m.heapUsed + m.external;
  };
  gc();
  const rssBefore = process.memoryUsage().rss;
  const heapBefore = heap();
  const driver = await Driver.init(options);
  try {
    gc();
    const rssAfter = process.memoryUsage().rss;
    const heapAfter = heap();
    return {
      rssBefore,
      rssAfter,
      heapBefore,
      heapAfter,
      rssPerLayer: bytesPerLayer(rssBefore, rssAfter, n),
      heapPerLayer: bytesPerLayer(heapBefore, heapAfter, n),
    };
  } finally {
    await driver.close();
  }
}
