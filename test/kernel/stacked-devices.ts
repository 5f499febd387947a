// Stacked devices for fault injection: <name> is a dm device over a loop device over a sparse
// file (dmsetup and losetup as reference tools). `fault()` swaps its table for one that fails
// I/O, `lift()` puts the linear mapping back.

import type { ExecutionContext } from 'ava';
import type { DriverOptions } from '../../src/driver/options.js';
import { dmsetup, run } from './reference-tools.js';
import { Cleanup, PREFIX, sparseFile } from './helpers.js';
import { dmNames, newHome } from './driver-helpers.js';

export interface Stacked {
  name: string;
  path: string;
  sectors: string;
  loop: string;
}

export function stacked(cleanup: Cleanup, tag: string, bytes: number): Stacked {
  const file = sparseFile(cleanup, tag, bytes);
  const loop = run('losetup', ['--find', '--show', file]).trim();
  cleanup.loop(Number(/loop(\d+)$/.exec(loop)![1]));
  const sectors = run('blockdev', ['--getsz', loop]).trim();
  const name = cleanup.device(`${PREFIX}-${tag}`);
  dmsetup('create', name, '--table', `0 ${sectors} linear ${loop} 0`);
  return { name, path: `/dev/mapper/${name}`, sectors, loop };
}

function swapTable(device: Stacked, table: string): void {
  dmsetup('load', device.name, '--table', table);
  dmsetup('suspend', device.name);
  dmsetup('resume', device.name);
}

export const fault = (device: Stacked, kind: 'error' | 'error-writes'): void =>
  swapTable(
    device,
    kind === 'error'
      ? `0 ${device.sectors} error`
      : `0 ${device.sectors} flakey ${device.loop} 0 0 3600 1 error_writes`,
  );
export const lift = (device: Stacked): void => swapTable(device, `0 ${device.sectors} linear ${device.loop} 0`);

/** A pool on stacked data (128 MiB) and metadata (16 MiB) devices; faults are lifted at teardown first. */
export function stackedPool(
  t: ExecutionContext,
  tag: string,
): { data: Stacked; meta: Stacked; options: DriverOptions } {
  const cleanup = new Cleanup(t);
  const data = stacked(cleanup, `${tag}-data`, 128 << 20);
  const meta = stacked(cleanup, `${tag}-meta`, 16 << 20);
  const options: DriverOptions = {
    home: newHome(tag),
    baseSize: '64M',
    dataDevice: data.path,
    metadataDevice: meta.path,
  };
  return { data, meta, options };
}

/** Registered after the driver's teardown, so it runs before it: a failed test leaves no fault behind. */
export function liftAtTeardown(t: ExecutionContext, ...devices: Stacked[]): void {
  t.teardown(() => {
    for (const device of devices) if (dmNames().includes(device.name)) lift(device);
  });
}
