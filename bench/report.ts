// The benchmark's result: the types of the merged result (JSON) of the host and guest parts,
// merge() (which evaluates the targets, report-targets.ts) and writeResults() (the JSON and the
// SVG chart of report-svg.ts). The tables printed on stdout are report-tables.ts.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MachineInfo, Stats } from './common.js';
import type { LatencyResult } from './latency.js';
import type { LifecycleResult } from './lifecycle.js';
import type { NativeResult } from './native.js';
import { renderSvg } from './report-svg.js';
import { evaluateTargets } from './report-targets.js';
import type { ScaleResult } from './scale.js';
import type { SnapshotterResult } from './snapshotter.js';

/** Where the guest part ran: a test kernel, or directly on a host with device-mapper. */
export type VmBackendName = 'qemu' | 'uml' | 'host';

export interface GuestInfo extends MachineInfo {
  /** os.loadavg() inside the guest at the end of its run. */
  loadavg?: number[];
}

export interface GuestResult {
  info: GuestInfo;
  latency?: LatencyResult;
  lifecycle?: LifecycleResult;
  scale?: ScaleResult;
  snapshotter?: SnapshotterResult;
}

export interface HostResult {
  info: MachineInfo;
  native?: NativeResult;
  /** Why the native part did not run. */
  skipped?: string;
}

export interface TargetLine {
  id: string;
  /** true: MET, false: MISSED, null: not evaluated in this run. */
  met: boolean | null;
  text: string;
}

export interface BenchResult {
  meta: {
    date: string;
    mode: 'full' | 'quick';
    backend: VmBackendName;
    machine: string;
    totalS: number;
    /** os.loadavg() of the host when the run started and ended: other jobs make latency figures noisy. */
    loadavg?: { start: number[]; end: number[] };
    note?: string;
  };
  host?: HostResult;
  guest?: GuestResult;
  targets: TargetLine[];
}

/** Writes <dir>/<name>.json and <dir>/<name>.svg (each through a temp file and a rename). */
export function writeResults(result: BenchResult, dir: string, name = 'latest'): { json: string; svg: string } {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, `${name}.json`);
  const svg = join(dir, `${name}.svg`);
  writeFileSync(`${json}.tmp`, `${JSON.stringify(result, null, 1)}\n`);
  renameSync(`${json}.tmp`, json);
  writeFileSync(`${svg}.tmp`, renderSvg(result));
  renameSync(`${svg}.tmp`, svg);
  return { json, svg };
}

export function merge(
  meta: BenchResult['meta'],
  host: HostResult | undefined,
  guest: GuestResult | undefined,
): BenchResult {
  const partial = { meta, host, guest };
  return { ...partial, targets: evaluateTargets(partial) };
}

export type { Stats };
