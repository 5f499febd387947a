// The DeviceSet's layers by id, with an index by thin id so a create can tell in O(1) whether a
// thin id is already owned (a scan of every layer per create made creates slow on big homes).
import type { LayerRecord } from './metadata-store.js';

export class LayerTable extends Map<string, LayerRecord> {
  readonly #layerByThinId = new Map<number, string>();
  #version = 0;

  /** Bumped by every change: what a view of the whole table was built from. */
  get version(): number {
    return this.#version;
  }

  override set(id: string, record: LayerRecord): this {
    const previous = super.get(id);
    if (previous && this.#layerByThinId.get(previous.deviceId) === id) this.#layerByThinId.delete(previous.deviceId);
    super.set(id, record);
    this.#layerByThinId.set(record.deviceId, id);
    this.#version++;
    return this;
  }

  override delete(id: string): boolean {
    const previous = super.get(id);
    if (previous && this.#layerByThinId.get(previous.deviceId) === id) this.#layerByThinId.delete(previous.deviceId);
    this.#version++;
    return super.delete(id);
  }

  override clear(): void {
    this.#layerByThinId.clear();
    this.#version++;
    super.clear();
  }

  /** True when some layer's metadata references this thin id. */
  ownsThinId(deviceId: number): boolean {
    return this.#layerByThinId.has(deviceId);
  }
}
