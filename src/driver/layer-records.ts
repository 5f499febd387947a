// The DeviceSet's layer records: the in-memory table (LayerTable: by id, indexed by thin id)
// kept in step with the MetadataStore's files, and the public view of a record (LayerMetadata).
import { DevmapperError } from '../errors.js';
import { LayerTable } from './layer-table.js';
import { BASE_LAYER, type LayerRecord, type MetadataStore } from './metadata-store.js';

export interface LayerMetadata {
  id: string;
  parent: string | null;
  /** The thin id in the pool. */
  deviceId: number;
  /** Virtual size in bytes. */
  size: bigint;
  /** The dm device name it gets when active. */
  deviceName: string;
  mounted: boolean;
  /** Held active by activate() for a user that mounts it itself. */
  activated: boolean;
  /** What create() or setMeta() attached. */
  meta: Record<string, unknown> | undefined;
}

export class LayerRecords extends LayerTable {
  readonly #store: MetadataStore;

  constructor(store: MetadataStore) {
    super();
    this.#store = store;
  }

  /** A layer users can see: known, not the base device, not pending deletion. */
  isLive(id: string): boolean {
    const record = this.get(id);
    return record !== undefined && id !== BASE_LAYER && !record.deferredDelete;
  }

  /** The live layer's record, or ERR_DM_UNKNOWN_LAYER. */
  require(id: string): LayerRecord {
    const record = this.get(id);
    if (!record || !this.isLive(id)) throw new DevmapperError('ERR_DM_UNKNOWN_LAYER', `layer ${id} does not exist`);
    return record;
  }

  /** Writes a record and keeps it. */
  write(record: LayerRecord): void {
    this.#store.writeLayer(record);
    this.set(record.id, record);
  }

  /** Writes a changed copy of a layer's record (undefined fields are dropped) and returns it. */
  update(record: LayerRecord, change: Partial<LayerRecord>): LayerRecord {
    const next = { ...record, ...change } as LayerRecord;
    for (const key of Object.keys(change) as Array<keyof LayerRecord>) if (next[key] === undefined) delete next[key];
    this.write(next);
    return next;
  }

  /** Layers whose deletion is deferred (busy when removed). */
  deferred(): LayerRecord[] {
    return [...this.values()].filter((r) => r.deferredDelete);
  }

  /** The public view of a live layer (undefined otherwise). */
  metadata(id: string, view: { deviceName: string; mounted: boolean }): LayerMetadata | undefined {
    const record = this.get(id);
    if (!record || !this.isLive(id)) return undefined;
    return {
      id,
      parent: record.parent,
      deviceId: record.deviceId,
      size: BigInt(record.size),
      deviceName: view.deviceName,
      mounted: view.mounted,
      activated: record.activated === true,
      meta: record.meta,
    };
  }
}
