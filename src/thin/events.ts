// Pool events without blocking the event loop. The watcher owns a control fd of its own,
// armed with DM_DEV_ARM_POLL; poll(2) runs off the main thread with a short timeout so stop()
// takes effect promptly. On each wake-up the pool's event counter is compared and, when it
// moved, its status is read and what changed is reported (thin-provisioning.rst "Status").
import { EventEmitter, on } from 'node:events';
import { DeviceMapper } from '../ioctl/device-mapper.js';
import { Kernel, type KernelOptions } from '../ioctl/kernel.js';
import type { ThinPool } from './pool.js';
import { parsePoolStatus, type PoolStatus, type PoolStatusOk } from './status.js';
import type { Sectors } from './units.js';

export type PoolEventKind =
  | 'low-water-mark' // free data blocks fell to the low-water mark
  | 'metadata-low-water' // free metadata blocks fell to the kernel's metadata threshold
  | 'out-of-data-space' // mode became out_of_data_space
  | 'read-only' // mode became ro
  | 'failed' // the pool reports Fail or Error
  | 'needs-check' // needs_check was set
  | 'resumed-rw' // mode went back to rw
  | 'changed'; // an event none of the above explains

export interface PoolEvent {
  kinds: PoolEventKind[];
  eventNr: number;
  status: PoolStatus;
  previous: PoolStatus;
}

/** Emits 'event' (PoolEvent) and 'error'; stop() ends it. Also async-iterable. */
export class PoolWatcher extends EventEmitter {
  readonly #dm: DeviceMapper;
  readonly #poolName: string;
  readonly #lowWaterMark: bigint;
  readonly #dataBlockSize: Sectors;
  #stopped = false;
  readonly #done: Promise<void>;

  /** Its control fd uses the pool's kernel handle unless `ffi` or `kernel` says otherwise. */
  constructor(pool: ThinPool, options: KernelOptions & { pollIntervalMs?: number } = {}) {
    super();
    const kernel = options.kernel ?? (options.ffi === undefined ? pool.dm.kernel : Kernel.for(options.ffi));
    this.#dm = DeviceMapper.open({ kernel });
    this.#poolName = pool.name;
    this.#lowWaterMark = pool.table.lowWaterMark;
    this.#dataBlockSize = pool.table.dataBlockSize;
    this.#done = this.#loop(options.pollIntervalMs ?? 200);
  }

  /** Stops watching and closes the watcher's control fd. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<PoolEvent> {
    const ac = new AbortController();
    void this.#done.then(() => ac.abort());
    try {
      for await (const [event] of on(this, 'event', { signal: ac.signal })) yield event as PoolEvent;
    } catch (error) {
      if ((error as Error).name !== 'AbortError') throw error;
    }
  }

  #status(): PoolStatus {
    const [target] = this.#dm.status(this.#poolName, { noFlush: true });
    return parsePoolStatus(target?.params ?? 'Error', { dataBlockSize: this.#dataBlockSize });
  }

  async #loop(intervalMs: number): Promise<void> {
    try {
      this.#dm.armPoll();
      let eventNr = this.#dm.info(this.#poolName).eventNr;
      let previous = this.#status();
      while (!this.#stopped) {
        const woke = await this.#dm.pollEvent(intervalMs);
        if (this.#stopped) break;
        if (!woke) continue;
        this.#dm.armPoll();
        const now = this.#dm.info(this.#poolName).eventNr;
        if (now === eventNr) continue; // another device's event
        eventNr = now;
        const status = this.#status();
        this.emit('event', {
          kinds: classify(previous, status, this.#lowWaterMark),
          eventNr,
          status,
          previous,
        } satisfies PoolEvent);
        previous = status;
      }
    } catch (error) {
      if (!this.#stopped) this.emit('error', error);
    } finally {
      this.#dm.close();
      this.#stopped = true;
    }
  }
}

function classify(previous: PoolStatus, status: PoolStatus, lowWaterMark: bigint): PoolEventKind[] {
  if (status.kind !== 'ok') return ['failed'];
  const kinds: PoolEventKind[] = [];
  const before = previous.kind === 'ok' ? previous : undefined;
  // Reported once per crossing, as the kernel raises it: free space was above the mark before.
  const wasAbove = !before || before.data.freeBlocks > lowWaterMark;
  if (lowWaterMark > 0n && status.data.freeBlocks <= lowWaterMark && wasAbove) kinds.push('low-water-mark');
  if (metadataLow(status) && !(before && metadataLow(before))) kinds.push('metadata-low-water');
  if (status.mode !== before?.mode) {
    if (status.mode === 'out_of_data_space') kinds.push('out-of-data-space');
    else if (status.mode === 'ro') kinds.push('read-only');
    else if (before) kinds.push('resumed-rw');
  }
  if (status.needsCheck && !before?.needsCheck) kinds.push('needs-check');
  if (kinds.length === 0) kinds.push('changed');
  return kinds;
}

/**
 * Whether free metadata is at the kernel's threshold, as dm-thin judges it: the metadata space
 * map's free blocks at or below the threshold the status prints last (min(1024 blocks, a
 * quarter of the device), metadata_low_callback's edge-triggered check). The status counts the
 * kernel's reserve (a tenth of the device, at most 4096 blocks) as used, so it is added back;
 * 0 free in the status is low in any case. False on kernels that do not print the threshold.
 */
export function metadataLow(status: PoolStatusOk): boolean {
  const threshold = status.metadataLowWatermark;
  if (threshold === undefined || status.metadata.totalBlocks === 0n) return false;
  // 0 free: into the reserve, which on a device above 40 MiB is larger than the threshold.
  if (status.metadata.freeBlocks === 0n) return true;
  const tenth = status.metadata.totalBlocks / 10n;
  const reserve = tenth < 4096n ? tenth : 4096n;
  return status.metadata.freeBlocks + reserve <= threshold;
}
