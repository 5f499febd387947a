// A snapshot as the snapshotter keeps it: containerd's Info (name, parent, kind, labels, times)
// plus the Driver layer that holds its data. It is persisted inside the layer's own record
// (the Driver's `meta`), so creating a snapshot is one Driver create under the crash protocol,
// and committing or relabelling it is one atomic record write: no second store to keep in step.
import type { LayerMetadata } from '../driver/device-set.js';
import { SnapshotError } from './errors.js';

export type SnapshotKind = 'active' | 'view' | 'committed';

export interface SnapshotInfo {
  name: string;
  /** The committed snapshot it was made from; '' for none. */
  parent: string;
  kind: SnapshotKind;
  /** Milliseconds since the epoch, the fraction to the clock's sub-millisecond part (ioctl/clock.ts). */
  created: number;
  updated: number;
  labels: Record<string, string>;
}

export interface Snapshot extends SnapshotInfo {
  layerId: string;
  /** For a committed snapshot: the bytes its layer mapped when it was committed. */
  mappedBytes: bigint | undefined;
}

/** The field of a layer's meta that holds its snapshot. */
const META_KEY = 'containerd';
/** The layer every parentless snapshot starts from: the Driver's base with an empty root. */
export const SNAPSHOT_BASE_LAYER = 'ctrd-base';
const LAYER_ID = /^ctrd-([0-9]+)$/;

/** containerd's own limits (labels.Validate): a label's key and value together take at most 4 KiB. */
export const MAX_LABEL_BYTES = 4096;
export const MAX_LABELS = 256;
export const MAX_KEY_BYTES = 4096;

export function layerIdFor(n: number): string {
  return `ctrd-${n}`;
}

/** The number in a snapshot layer's id, or undefined for a layer that is not one. */
export function layerNumber(layerId: string): number | undefined {
  const m = LAYER_ID.exec(layerId);
  return m ? Number(m[1]) : undefined;
}

export function toMeta(snapshot: Snapshot): Record<string, unknown> {
  const { name, parent, kind, created, updated, labels, mappedBytes } = snapshot;
  return {
    [META_KEY]: {
      v: 1,
      name,
      parent,
      kind,
      created,
      updated,
      labels,
      ...(mappedBytes === undefined ? {} : { mappedBytes: String(mappedBytes) }),
    },
  };
}

/**
 * The snapshot a layer holds; undefined for a layer that holds none. A record that claims one
 * but does not have its shape is an error naming the layer (it is left alone, not served).
 */
export function fromLayer(layer: LayerMetadata): Snapshot | undefined {
  const raw = layer.meta?.[META_KEY];
  if (raw === undefined) return undefined;
  const bad = (field: string): never => {
    throw new SnapshotError('INTERNAL', `layer ${layer.id}: its snapshot record has a bad ${field}`);
  };
  if (raw === null || typeof raw !== 'object') return bad('shape');
  const r = raw as Record<string, unknown>;
  if (r.v !== 1) bad('version');
  if (typeof r.name !== 'string' || r.name === '') bad('name');
  if (typeof r.parent !== 'string') bad('parent');
  if (r.kind !== 'active' && r.kind !== 'view' && r.kind !== 'committed') bad('kind');
  if (!Number.isFinite(r.created) || !Number.isFinite(r.updated)) bad('time');
  const labels = r.labels;
  if (
    labels === null ||
    typeof labels !== 'object' ||
    Object.values(labels as object).some((v) => typeof v !== 'string')
  )
    bad('labels');
  if (r.mappedBytes !== undefined && (typeof r.mappedBytes !== 'string' || !/^[0-9]+$/.test(r.mappedBytes)))
    bad('mappedBytes');
  return {
    name: r.name as string,
    parent: r.parent as string,
    kind: r.kind as SnapshotKind,
    created: r.created as number,
    updated: r.updated as number,
    labels: { ...(labels as Record<string, string>) },
    layerId: layer.id,
    mappedBytes: r.mappedBytes === undefined ? undefined : BigInt(r.mappedBytes as string),
  };
}

/** A key or name from a client: non-empty, bounded, no NUL. */
export function assertKey(key: unknown, field: string): asserts key is string {
  if (typeof key !== 'string' || key === '') throw new SnapshotError('INVALID_ARGUMENT', `${field} must not be empty`);
  if (Buffer.byteLength(key) > MAX_KEY_BYTES)
    throw new SnapshotError(
      'INVALID_ARGUMENT',
      `${field} ${JSON.stringify(key.slice(0, 64))}… is longer than ${MAX_KEY_BYTES} bytes`,
    );
  if (key.includes('\0'))
    throw new SnapshotError('INVALID_ARGUMENT', `${field} ${JSON.stringify(key)} contains a NUL byte`);
}

/** Labels from a client, checked against containerd's limits. */
export function checkLabels(labels: Record<string, string> | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  const entries = Object.entries(labels ?? {});
  if (entries.length > MAX_LABELS)
    throw new SnapshotError('INVALID_ARGUMENT', `${what}: ${entries.length} labels, more than ${MAX_LABELS}`);
  for (const [key, value] of entries) {
    if (key === '') throw new SnapshotError('INVALID_ARGUMENT', `${what}: a label has an empty key`);
    if (typeof value !== 'string')
      throw new SnapshotError('INVALID_ARGUMENT', `${what}: label ${JSON.stringify(key)} is not a string`);
    if (Buffer.byteLength(key) + Buffer.byteLength(value) > MAX_LABEL_BYTES) {
      throw new SnapshotError(
        'INVALID_ARGUMENT',
        `${what}: label ${JSON.stringify(key.slice(0, 64))} is longer than ${MAX_LABEL_BYTES} bytes with its value`,
      );
    }
    out[key] = value;
  }
  return out;
}

/** The fields containerd's filters see on a snapshot (its snapshot adaptor). */
export function snapshotField(info: SnapshotInfo, path: readonly string[]): string | undefined {
  const [field, ...rest] = path;
  switch (field) {
    case 'kind':
      return rest.length === 0 ? info.kind : undefined;
    case 'name':
      return rest.length === 0 ? info.name : undefined;
    case 'parent':
      return rest.length === 0 ? info.parent : undefined;
    case 'labels':
      return rest.length === 0 ? undefined : info.labels[rest.join('.')];
    default:
      return undefined;
  }
}
