// driver.check(): compares the driver's metadata, the pool and the kernel, and with `repair`
// fixes what it safely can. Thin ids alive in the pool are found by probing: a temporary dm
// device with a `thin <pool> <id>` table loads only when the pool has that id (ENODATA
// otherwise), for every id the allocator has handed out. (thin_ls on a reserved metadata
// snapshot would also work, but needs thin-provisioning-tools; probing needs nothing.)
import type { DeviceMapper } from '../ioctl/device-mapper.js';
import { DmSystemError } from '../errors.js';
import type { ThinPool } from '../thin/pool.js';
import { formatThinTable, poolModeOf, poolTakesMessages } from '../thin/status.js';
import { BASE_LAYER, type DamagedRecord, type LayerRecord, type ThinIdConflict } from './metadata-store.js';
import type { ThinCheckResult } from './thin-check.js';
import type { HomeLayout } from './home-layout.js';

export interface CheckReport {
  /** Nothing found (after repair: nothing left). */
  clean: boolean;
  /** Thin ids alive in the pool that no layer's metadata references. */
  leakedThinIds: number[];
  /** Layers whose thin id is gone from the pool (each confirmed by a second probe). */
  missingThinIds: Array<{ layer: string; deviceId: number }>;
  /** Layer record files that could not be used: not JSON, null, wrong types or ranges. */
  damagedRecords: Array<{ file: string; field: string | undefined; reason: string }>;
  /** Thin ids that more than one layer record names (at most one of them owns it). */
  thinIdConflicts: Array<{ deviceId: number; layers: string[] }>;
  /** Files in <home>/quarantine (records set aside by an earlier repair; never deleted). */
  quarantined: string[];
  /** Active dm devices named for this home that no layer knows. */
  strayDevices: string[];
  /** Mounts under <home>/mnt that no get() holds. */
  unheldMounts: string[];
  /** Layers whose deletion is deferred (busy when removed). */
  pendingDeferredDeletions: string[];
  /**
   * The `meta` of each layer named above that has one, by layer id: what an adapter keeps
   * there (the containerd snapshotter's snapshot Info) names the layer for its users.
   */
  layerMeta: Record<string, Record<string, unknown>>;
  transactionId: { pool: bigint; metadata: bigint; consistent: boolean };
  /** The pool's mode ('rw', 'ro', 'out_of_data_space'); anything but 'rw' is a problem. */
  poolMode: string;
  /**
   * The kernel found the pool's metadata damaged: it stays read-only until thin_check /
   * thin_repair (thin-provisioning-tools) clear it offline. Counts as a problem; repair cannot fix it.
   */
  needsCheck: boolean;
  /** With thinCheck: thin_check's verdict on the pool's metadata (see thin-check.ts). */
  thinCheck?: ThinCheckResult;
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
  /** The layer records that validated. */
  records: LayerRecord[];
  /** Record files that did not (inspect mode), with the thin id each names if any. */
  damaged: DamagedRecord[];
  conflicts: ThinIdConflict[];
  /** Thin ids named by files in the quarantine (undefined: a file naming none readable). */
  quarantinedThinIds: Array<number | undefined>;
  quarantinedFiles: string[];
  /** Highest thin id ever handed out (nextDeviceId - 1, or 2^24 - 1 after wrapping). */
  highestAllocatedId: number;
  metadataTransactionId: bigint;
  mountedLayers: Set<string>;
  /** Mount points under <home>/mnt, and the layer each belongs to (undefined when none). */
  mounts: Array<{ mountPoint: string; layer: string | undefined }>;
  deleteThin(deviceId: number): void;
  /** Moves a record file (by name in the metadata directory) to the quarantine; returns its new path. */
  quarantine(name: string): string;
  unmount(mountPoint: string): void;
  setMetadataTransactionId(id: bigint): void;
  /** Retries pending deferred deletions; resolves with the layers still pending. */
  retryDeferred(): Promise<string[]>;
  /** With thinCheck: runs thin_check on the pool's metadata. */
  thinCheck?: () => Promise<ThinCheckResult>;
  /** The pool's thin ids as thin_ls lists them (undefined: thin_ls unavailable), asked before a record is set aside. */
  thinLs?: () => Promise<Set<number> | undefined>;
}

export async function runCheck(target: CheckTarget, repair: boolean): Promise<CheckReport> {
  const { dm, pool, layout } = target;
  const report: CheckReport = {
    clean: true,
    leakedThinIds: [],
    missingThinIds: [],
    damagedRecords: [],
    thinIdConflicts: target.conflicts,
    quarantined: [...target.quarantinedFiles],
    strayDevices: [],
    unheldMounts: [],
    pendingDeferredDeletions: [],
    layerMeta: {},
    transactionId: { pool: 0n, metadata: target.metadataTransactionId, consistent: true },
    poolMode: 'rw',
    needsCheck: false,
    repairs: [],
    skipped: [],
  };
  report.damagedRecords = target.damaged.map((d) => ({ file: d.path, field: d.error.field, reason: d.error.message }));
  const claimed = new Set(target.records.map((r) => r.deviceId));
  // Ids a record might own though no valid record names them: those of damaged and
  // quarantined records. A file that names no readable id might own any id at all.
  const unsureClaims = [...target.damaged.map((d) => d.claimedDeviceId), ...target.quarantinedThinIds];
  const highest = target.highestAllocatedId;
  const alive = probeThinIds(dm, pool, layout.probeName, highest);
  // A damaged or quarantined record may name any thin id up to 2^24 - 1: each such id past the
  // allocator's is asked alone (probing every id below it was millions of table loads).
  for (const id of new Set(unsureClaims))
    if (id !== undefined && id > highest && probeThinIds(dm, pool, layout.probeName, id, id).has(id)) alive.add(id);
  // Ids past the allocator's (made behind the driver's back, or a deviceset.json from earlier)
  // are beyond the probe: with thinCheck, thin_ls's listing of the whole metadata finds them,
  // each confirmed by a probe of its own.
  if (target.thinCheck && target.thinLs) {
    for (const id of (await target.thinLs()) ?? [])
      if (id > highest && probeThinIds(dm, pool, layout.probeName, id, id).has(id)) alive.add(id);
  }
  for (const id of alive) if (!claimed.has(id)) report.leakedThinIds.push(id);
  for (const record of target.records)
    if (!alive.has(record.deviceId)) report.missingThinIds.push({ layer: record.id, deviceId: record.deviceId });
  const known = new Set(target.records.map((r) => layout.thinName(r.id)));
  for (const device of dm.list()) {
    if (layout.isLayerDevice(device.name, pool.name) && !known.has(device.name)) report.strayDevices.push(device.name);
  }
  for (const mount of target.mounts)
    if (!mount.layer || !target.mountedLayers.has(mount.layer)) report.unheldMounts.push(mount.mountPoint);
  report.pendingDeferredDeletions = target.records.filter((r) => r.deferredDelete).map((r) => r.id);
  const poolStatus = pool.status();
  report.transactionId.pool = poolStatus.kind === 'ok' ? poolStatus.transactionId : -1n;
  report.transactionId.consistent = report.transactionId.pool === target.metadataTransactionId;
  const state = poolModeOf(poolStatus);
  report.poolMode = state.mode;
  report.needsCheck = state.needsCheck;
  // A read-only (or needs_check) pool takes no messages: nothing in it can be deleted.
  const takesMessages = poolTakesMessages(state);
  if (target.thinCheck) report.thinCheck = await target.thinCheck();

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
      report.skipped.push(
        `pool ${pool.name} needs_check: deactivate it (Driver.cleanup), run thin_check --clear-needs-check-flag (or thin_repair) on its metadata device, then init again`,
      );
    } else if (state.mode !== 'rw') {
      report.skipped.push(
        `pool ${pool.name} is ${state.mode}: ${state.mode === 'out_of_data_space' ? 'grow it (growPool) or remove layers' : 'reload its table read-write (or grow its metadata device)'}; check cannot change that`,
      );
    }
    // Damaged records are moved aside, never deleted: someone can read and restore them.
    for (const damaged of target.damaged) {
      const moved = target.quarantine(damaged.name);
      report.quarantined.push(moved);
      report.repairs.push(`moved damaged record ${damaged.path} to ${moved} (${damaged.error.message})`);
    }
    for (const conflict of report.thinIdConflicts) {
      report.skipped.push(
        `thin id ${conflict.deviceId} is named by layers ${conflict.layers.join(', ')}: at most one owns it; fix the others' records by hand (nothing deleted)`,
      );
    }
    for (const id of report.leakedThinIds) {
      // Deleting is the one act that destroys data: only for an id the pool has and no record,
      // damaged, quarantined or conflicting, can own.
      const reason = !takesMessages
        ? `pool is ${report.poolMode}${report.needsCheck ? ' and needs_check' : ''}`
        : unsureClaims.includes(id)
          ? 'a damaged or quarantined record names it'
          : unsureClaims.includes(undefined)
            ? 'a damaged or quarantined record names no readable thin id, so it may own this one'
            : report.thinIdConflicts.length > 0
              ? "records conflict over thin ids, so this may be one of those layers' real thin id"
              : undefined;
      if (reason) {
        report.skipped.push(`leaked thin id ${id}: ${reason}; left in place`);
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
    // A second, independent view before a record is set aside: thin_ls on a metadata snapshot.
    const listed = report.missingThinIds.length > 0 && target.thinLs ? await target.thinLs() : undefined;
    for (const { layer, deviceId } of report.missingThinIds) {
      if (listed?.has(deviceId)) {
        report.skipped.push(
          `layer ${layer}: thin id ${deviceId} did not answer the probe but thin_ls lists it in the pool's metadata: left alone`,
        );
        continue;
      }
      if (target.mountedLayers.has(layer)) {
        report.skipped.push(`layer ${layer} (thin id ${deviceId} missing) is in use: metadata kept`);
        continue;
      }
      if (layer === BASE_LAYER) {
        report.skipped.push(
          `the base device's thin id ${deviceId} is gone from the pool: the home cannot be repaired (its layers' data may still be there as leaked thin ids)`,
        );
        continue;
      }
      // The pool's own word, asked again for this id alone, before the record is moved aside.
      if (probeThinIds(dm, pool, layout.probeName, deviceId, deviceId).has(deviceId)) {
        report.skipped.push(`layer ${layer}: thin id ${deviceId} answered a second probe: left alone`);
        continue;
      }
      const moved = target.quarantine(`${layer}.layer.json`);
      report.quarantined.push(moved);
      report.repairs.push(
        `moved the record of layer ${layer}, whose thin id ${deviceId} is not in the pool${listed ? " (nor in thin_ls's listing)" : ''}, to ${moved}`,
      );
    }
    if (report.pendingDeferredDeletions.length > 0) {
      // A layer still mounted waits for its last put (retryDeferred leaves it alone).
      const waiting = report.pendingDeferredDeletions.filter((layer) => target.mountedLayers.has(layer));
      const ready = report.pendingDeferredDeletions.filter((layer) => !target.mountedLayers.has(layer));
      for (const layer of waiting)
        report.skipped.push(`deferred deletion of layer ${layer} waits for its last put: it is mounted`);
      if (ready.length > 0 && !takesMessages) {
        for (const layer of ready)
          report.skipped.push(`deferred deletion of layer ${layer}: pool is ${report.poolMode}, left pending`);
      } else if (ready.length > 0) {
        const stillPending = new Set(await target.retryDeferred());
        const done = ready.filter((layer) => !stillPending.has(layer));
        if (done.length > 0) report.repairs.push(`completed deferred deletions of ${done.join(', ')}`);
        for (const layer of ready.filter((l) => stillPending.has(l)))
          report.skipped.push(`deferred deletion of layer ${layer}: its device is still busy`);
      }
    }
    if (!report.transactionId.consistent && report.transactionId.pool >= 0n) {
      // The layers now match the pool, so the pool's id is the true one.
      target.setMetadataTransactionId(report.transactionId.pool);
      report.repairs.push(
        `metadata transaction id ${target.metadataTransactionId} set to the pool's ${report.transactionId.pool}`,
      );
    }
    if (report.thinCheck?.ran && !report.thinCheck.ok) {
      report.skipped.push(
        `thin_check found the pool's metadata damaged: ${report.thinCheck.summary}; see the README's failure modes (thin_repair)`,
      );
    }
  }
  const named = new Set([
    ...report.missingThinIds.map((m) => m.layer),
    ...report.thinIdConflicts.flatMap((c) => c.layers),
    ...report.pendingDeferredDeletions,
  ]);
  for (const record of target.records)
    if (named.has(record.id) && record.meta) report.layerMeta[record.id] = record.meta;
  const problems =
    report.leakedThinIds.length +
    report.missingThinIds.length +
    report.damagedRecords.length +
    report.thinIdConflicts.length +
    report.strayDevices.length +
    report.unheldMounts.length +
    report.pendingDeferredDeletions.length +
    (report.transactionId.consistent ? 0 : 1) +
    (report.needsCheck ? 1 : 0) +
    (report.poolMode === 'rw' ? 0 : 1) +
    (report.thinCheck?.ran && !report.thinCheck.ok ? 1 : 0);
  report.clean = problems === 0 || (repair && report.skipped.length === 0);
  return report;
}

/** The ids in [lowest, highest] the pool has, by loading a probe table for each. */
function probeThinIds(dm: DeviceMapper, pool: ThinPool, probeName: string, highest: number, lowest = 0): Set<number> {
  const alive = new Set<number>();
  const poolDev = pool.devno;
  if (dm.exists(probeName)) dm.remove(probeName);
  dm.create(probeName);
  try {
    for (let id = lowest; id <= highest; id++) {
      try {
        dm.load(probeName, [
          { start: 0n, length: 8n, type: 'thin', params: formatThinTable({ poolDev, deviceId: id }) },
        ]);
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
