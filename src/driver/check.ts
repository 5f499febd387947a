// driver.check(): compares the driver's metadata, the pool and the kernel, and with `repair`
// fixes what it safely can. Thin ids alive in the pool are found by probing: a temporary dm
// device with a `thin <pool> <id>` table loads only when the pool has that id (ENODATA
// otherwise), for every id the allocator has handed out. (thin_ls on a reserved metadata
// snapshot would also work, but needs thin-provisioning-tools; probing needs nothing.)
import type { DeviceMapper } from '../ioctl/device-mapper.js';
import { DmSystemError } from '../errors.js';
import type { ThinPool } from '../thin/pool.js';
import { formatThinTable, poolModeOf, poolTakesMessages } from '../thin/status.js';
import type { LayerRecord } from './metadata-store.js';
import type { HomeLayout } from './home-layout.js';

export interface CheckReport {
  /** Nothing found (after repair: nothing left). */
  clean: boolean;
  /** Thin ids alive in the pool that no layer's metadata references. */
  leakedThinIds: number[];
  /** Layers whose thin id is gone from the pool. */
  missingThinIds: Array<{ layer: string; deviceId: number }>;
  /** Active dm devices named for this home that no layer knows. */
  strayDevices: string[];
  /** Mounts under <home>/mnt that no get() holds. */
  unheldMounts: string[];
  /** Layers whose deletion is deferred (busy when removed). */
  pendingDeferredDeletions: string[];
  transactionId: { pool: bigint; metadata: bigint; consistent: boolean };
  /** The pool's mode ('rw', 'ro', 'out_of_data_space') and needs_check flag. */
  poolMode: string;
  /**
   * The kernel found the pool's metadata damaged: it stays read-only until thin_check /
   * thin_repair (thin-provisioning-tools) clear it offline. Counts as a problem; repair cannot fix it.
   */
  needsCheck: boolean;
  /** With repair: what was done, one line each. */
  repairs: string[];
  /** With repair: what was found but deliberately left alone, and why. */
  skipped: string[];
}

/** What check needs from the DeviceSet (kept narrow so the checker cannot reach further). */
export interface CheckTarget {
  dm: DeviceMapper;
  pool: ThinPool;
  layout: HomeLayout;
  records: LayerRecord[];
  /** Highest thin id ever handed out (nextDeviceId - 1, or 2^24 - 1 after wrapping). */
  highestAllocatedId: number;
  metadataTransactionId: bigint;
  mountedLayers: Set<string>;
  /** Mount points under <home>/mnt, and the layer each belongs to (undefined when none). */
  mounts: Array<{ mountPoint: string; layer: string | undefined }>;
  deleteThin(deviceId: number): void;
  removeRecord(layer: string): void;
  unmount(mountPoint: string): void;
  setMetadataTransactionId(id: bigint): void;
  /** Retries pending deferred deletions; resolves with the layers still pending. */
  retryDeferred(): Promise<string[]>;
}

export async function runCheck(target: CheckTarget, repair: boolean): Promise<CheckReport> {
  const { dm, pool, layout } = target;
  const report: CheckReport = {
    clean: true, leakedThinIds: [], missingThinIds: [], strayDevices: [], unheldMounts: [], pendingDeferredDeletions: [],
    transactionId: { pool: 0n, metadata: target.metadataTransactionId, consistent: true }, poolMode: 'rw', needsCheck: false,
    repairs: [], skipped: [],
  };
  const byDeviceId = new Map(target.records.map((r) => [r.deviceId, r]));
  const alive = probeThinIds(dm, pool, layout.probeName, target.highestAllocatedId);
  for (const id of alive) if (!byDeviceId.has(id)) report.leakedThinIds.push(id);
  for (const record of target.records) if (!alive.has(record.deviceId)) report.missingThinIds.push({ layer: record.id, deviceId: record.deviceId });
  const known = new Set(target.records.map((r) => layout.thinName(r.id)));
  for (const device of dm.list()) {
    if (layout.isLayerDevice(device.name, pool.name) && !known.has(device.name)) report.strayDevices.push(device.name);
  }
  for (const mount of target.mounts) if (!mount.layer || !target.mountedLayers.has(mount.layer)) report.unheldMounts.push(mount.mountPoint);
  report.pendingDeferredDeletions = target.records.filter((r) => r.deferredDelete).map((r) => r.id);
  const poolStatus = pool.status();
  report.transactionId.pool = poolStatus.kind === 'ok' ? poolStatus.transactionId : -1n;
  report.transactionId.consistent = report.transactionId.pool === target.metadataTransactionId;
  const state = poolModeOf(poolStatus);
  report.poolMode = state.mode;
  report.needsCheck = state.needsCheck;
  // A read-only (or needs_check) pool takes no messages: nothing in it can be deleted.
  const takesMessages = poolTakesMessages(state);

  if (repair) {
    for (const mountPoint of report.unheldMounts) {
      target.unmount(mountPoint);
      report.repairs.push(`unmounted ${mountPoint}`);
    }
    for (const name of report.strayDevices) {
      try {
        dm.remove(name);
        report.repairs.push(`removed stray device ${name}`);
      } catch (error) {
        if (!(error instanceof DmSystemError && error.code === 'EBUSY')) throw error;
        report.skipped.push(`stray device ${name} is open (${error.code}): left in place`);
      }
    }
    if (report.needsCheck) {
      report.skipped.push(`pool ${pool.name} needs_check: deactivate it (Driver.cleanup), run thin_check --clear-needs-check-flag (or thin_repair) on its metadata device, then init again`);
    }
    for (const id of report.leakedThinIds) {
      if (!takesMessages) {
        report.skipped.push(`leaked thin id ${id}: pool is ${report.poolMode}${report.needsCheck ? ' and needs_check' : ''}, left in place`);
        continue;
      }
      try {
        target.deleteThin(id);
        report.repairs.push(`deleted leaked thin id ${id}`);
      } catch (error) {
        // An active device (a stray that stayed open, or one someone else uses) maps it.
        if (!(error instanceof DmSystemError && error.code === 'EBUSY')) throw error;
        report.skipped.push(`leaked thin id ${id} is open (${error.code}): left in place`);
      }
    }
    for (const { layer, deviceId } of report.missingThinIds) {
      if (target.mountedLayers.has(layer)) {
        report.skipped.push(`layer ${layer} (thin id ${deviceId} missing) is in use: metadata kept`);
        continue;
      }
      target.removeRecord(layer);
      report.repairs.push(`removed metadata of layer ${layer}, whose thin id ${deviceId} is gone`);
    }
    if (report.pendingDeferredDeletions.length > 0) {
      // A layer still mounted waits for its last put (retryDeferred leaves it alone).
      const waiting = report.pendingDeferredDeletions.filter((layer) => target.mountedLayers.has(layer));
      const ready = report.pendingDeferredDeletions.filter((layer) => !target.mountedLayers.has(layer));
      for (const layer of waiting) report.skipped.push(`deferred deletion of layer ${layer} waits for its last put: it is mounted`);
      if (ready.length > 0 && !takesMessages) {
        for (const layer of ready) report.skipped.push(`deferred deletion of layer ${layer}: pool is ${report.poolMode}, left pending`);
      } else if (ready.length > 0) {
        const stillPending = new Set(await target.retryDeferred());
        const done = ready.filter((layer) => !stillPending.has(layer));
        if (done.length > 0) report.repairs.push(`completed deferred deletions of ${done.join(', ')}`);
        for (const layer of ready.filter((l) => stillPending.has(l))) report.skipped.push(`deferred deletion of layer ${layer}: its device is still busy`);
      }
    }
    if (!report.transactionId.consistent && report.transactionId.pool >= 0n) {
      // The layers now match the pool, so the pool's id is the true one.
      target.setMetadataTransactionId(report.transactionId.pool);
      report.repairs.push(`metadata transaction id ${target.metadataTransactionId} set to the pool's ${report.transactionId.pool}`);
    }
  }
  const problems = report.leakedThinIds.length + report.missingThinIds.length + report.strayDevices.length + report.unheldMounts.length
    + report.pendingDeferredDeletions.length + (report.transactionId.consistent ? 0 : 1) + (report.needsCheck ? 1 : 0);
  report.clean = problems === 0 || (repair && report.skipped.length === 0);
  return report;
}

/** The ids in [0, highest] the pool has, by loading a probe table for each. */
function probeThinIds(dm: DeviceMapper, pool: ThinPool, probeName: string, highest: number): Set<number> {
  const alive = new Set<number>();
  const poolDev = pool.deviceId;
  if (dm.exists(probeName)) dm.remove(probeName);
  dm.create(probeName);
  try {
    for (let id = 0; id <= highest; id++) {
      try {
        dm.load(probeName, [{ start: 0n, length: 8n, type: 'thin', params: formatThinTable({ poolDev, deviceId: id }) }]);
        alive.add(id);
        dm.clear(probeName);
      } catch (error) {
        if (!(error instanceof DmSystemError && error.code === 'ENODATA')) throw error;
      }
    }
  } finally {
    dm.remove(probeName);
  }
  return alive;
}
