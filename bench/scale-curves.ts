// Pure arithmetic of the scale bench: how much pool metadata N thin devices need, whether a
// curve measured at several sizes is linear, and the curves made from the measured points. No
// I/O, so the host tests can check it.
import { median, type Stats } from './common.js';
import type { ScaleCurve, ScalePoint } from './scale.js';

/** dm-thin metadata block: every btree node and space-map block is one of these. */
export const METADATA_BLOCK = 4096;

/**
 * Bytes of pool metadata for `devices` thin devices on `dataBytes` of data in blocks of
 * `dataBlockBytes`. Documentation/admin-guide/device-mapper/thin-provisioning.rst suggests
 * 48 bytes per data block for the mappings (at least 2 MiB). That guide does not count devices:
 * each create_thin allocates an empty mapping btree (dm_btree_empty(), one 4 KiB block) and
 * adds an entry to the top-level mapping tree (16 bytes: key + root) and to the details tree
 * (8-byte key + 24-byte disk_device_details), whose 4 KiB nodes hold 254 and 127 entries and
 * run about two thirds full. 25% slack for the shadow copies of a transaction and the space
 * maps; rounded up to whole MiB.
 */
export function metadataBytesFor(devices: number, dataBytes: number, dataBlockBytes: number): number {
  const mappings = Math.max(2 * 2 ** 20, (48 * dataBytes) / dataBlockBytes);
  const perDevice = METADATA_BLOCK + (METADATA_BLOCK / (254 * (2 / 3)) + METADATA_BLOCK / (127 * (2 / 3)));
  const bytes = (mappings + devices * perDevice) * 1.25;
  return Math.ceil(bytes / 2 ** 20) * 2 ** 20;
}

export interface CurvePoint {
  n: number;
  us: number;
}

export interface CurveShape {
  /** value at the largest size / value at the smallest. */
  growth: number;
  /** value at each size / value at the size before (one fewer entry than the sizes). */
  steps: number[];
  /**
   * k in "total cost ∝ n^k", fitted by least squares on log-log over every size (a per-item
   * value y at n means a total of y·n; a per-call value is the total itself). 1 is linear.
   */
  exponent: number;
  linear: boolean;
}

/**
 * A 'per item' curve is linear when its per-item value grows at most 1.5x from the smallest size
 * to the largest and at most 1.5x between neighbouring sizes; a 'per call' one (a single call
 * whose work may grow with the pool) when the call grows at most 1.5x as fast as the size.
 */
export function curveShape(points: readonly CurvePoint[], unit: 'per item' | 'per call'): CurveShape {
  if (points.length === 0) return { growth: 1, steps: [], exponent: unit === 'per item' ? 1 : 0, linear: true };
  const ratio = (a: number, b: number): number => (a > 0 ? b / a : 1);
  const first = points[0]!;
  const last = points[points.length - 1]!;
  const growth = round2(ratio(first.us, last.us));
  const steps = points.slice(1).map((p, i) => round2(ratio(points[i]!.us, p.us)));
  const allowed = (a: CurvePoint, b: CurvePoint): number => (unit === 'per item' ? 1.5 : 1.5 * (b.n / a.n));
  const linear = growth <= allowed(first, last) && points.slice(1).every((p, i) => steps[i]! <= allowed(points[i]!, p));
  return { growth, steps, exponent: round2(logLogSlope(points) + (unit === 'per item' ? 1 : 0)), linear };
}

/** Least-squares slope of log(us) against log(n); 0 with fewer than two usable points. */
export function logLogSlope(points: readonly CurvePoint[]): number {
  const usable = points.filter((p) => p.n > 0 && p.us > 0);
  if (usable.length < 2) return 0;
  const xs = usable.map((p) => Math.log(p.n));
  const ys = usable.map((p) => Math.log(p.us));
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < xs.length; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  return sxx > 0 ? sxy / sxx : 0;
}

/** Memory the process holds per layer: the growth from `before` to `after` over `n` layers. */
export function bytesPerLayer(before: number, after: number, n: number): number {
  return n > 0 ? Math.round(Math.max(0, after - before) / n) : 0;
}

/** Devices the bench activates at a size: a tenth, at least 5, at most `cap`. */
export function activeCount(n: number, cap: number): number {
  return Math.min(cap, Math.max(5, Math.round(n / 10)));
}

const round2 = (v: number): number => Math.round(v * 100) / 100;

/** Thin devices whose status is timed at every size. */
export const FIXED_STATUS = 100;

/** Per-item medians of `ns` in buckets of `size` items, for the fill curve. */
export function buckets(ns: number[], size: number): Array<{ n: number; us: number }> {
  const out: Array<{ n: number; us: number }> = [];
  for (let i = 0; i < ns.length; i += size) {
    const slice = ns.slice(i, i + size);
    out.push({ n: i + slice.length, us: Math.round(median(slice)) / 1000 });
  }
  return out;
}

/** The scale part's curves, one per measured quantity, each with its shape judged. */
export function curves(points: ScalePoint[], initEmpty: Stats): ScaleCurve[] {
  const defs: Array<{ id: string; label: string; unit: ScaleCurve['unit']; value: (p: ScalePoint) => number }> = [
    { id: 'create_thin', label: 'create_thin message (fill)', unit: 'per item', value: (p) => p.fill.message.median },
    {
      id: 'store_write',
      label: 'MetadataStore.writeLayer (fill)',
      unit: 'per item',
      value: (p) => p.fill.storeWrite.median,
    },
    { id: 'driver_create', label: 'Driver.create', unit: 'per item', value: (p) => p.driverCreate.median },
    { id: 'driver_remove', label: 'Driver.remove', unit: 'per item', value: (p) => p.driverRemove.median },
    { id: 'driver_list', label: 'Driver.list / layer', unit: 'per item', value: (p) => p.driverList.median / p.n },
    {
      id: 'init_metadata',
      label: 'Driver.init metadata work / layer',
      unit: 'per item',
      value: (p) => Math.max(0, p.init.median - initEmpty.median) / p.n,
    },
    {
      id: 'read_all',
      label: 'MetadataStore.readAllLayers / layer',
      unit: 'per item',
      value: (p) => p.readAllLayers.median / p.n,
    },
    { id: 'activate', label: 'thin device activation', unit: 'per item', value: (p) => p.activate.median },
    {
      id: 'dm_list',
      label: 'DM_LIST_DEVICES / device listed',
      unit: 'per item',
      value: (p) => p.dmList.median / p.listed,
    },
    {
      id: 'thin_status',
      label: 'thin device status (first pass)',
      unit: 'per item',
      value: (p) => p.thinStatus.median,
    },
    {
      id: 'thin_status_warm',
      label: 'thin device status (second pass)',
      unit: 'per item',
      value: (p) => p.thinStatusWarm?.median ?? p.thinStatus.median,
    },
    {
      id: 'thin_status_fixed',
      label: `thin device status (same first ${FIXED_STATUS})`,
      unit: 'per item',
      value: (p) => p.thinStatusFixed?.median ?? p.thinStatus.median,
    },
    { id: 'deactivate', label: 'thin device deactivation', unit: 'per item', value: (p) => p.deactivate.median },
    { id: 'pool_status', label: 'pool status (no-flush)', unit: 'per call', value: (p) => p.poolStatus.median },
    { id: 'pool_status_flush', label: 'pool status (flush)', unit: 'per call', value: (p) => p.poolStatusFlush.median },
  ];
  return defs.map((d) => {
    const pts = points.map((p) => ({ n: p.n, us: Math.round(d.value(p) * 1000) / 1000 }));
    const shape = curveShape(pts, d.unit);
    return { id: d.id, label: d.label, unit: d.unit, points: pts, ...shape };
  });
}
