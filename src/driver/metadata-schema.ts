// The metadata's shapes (layer record, the set's state, the open transaction, a log line) and their
// validation: every field checked on load, a MetadataError naming the file and the first bad field.
import { MetadataError } from '../errors.js';
import { RESERVED_LAYER_IDS } from './options.js';

/** One layer's device. */
export interface LayerRecord {
  id: string;
  parent: string | null;
  /** The thin id in the pool. */
  deviceId: number;
  /** Virtual size in bytes (decimal string: JSON has no bigint). */
  size: string;
  /** The pool transaction id that created it. */
  transactionId: string;
  /** Removal was asked while the device was busy; the deletion is retried later. */
  deferredDelete?: boolean;
  /**
   * Kept active for a user outside the driver (an engine that mounts the device itself):
   * init leaves its dm device in place instead of removing it as a leftover.
   */
  activated?: boolean;
  /** What the layer's creator attached to it (an engine adapter's own fields), stored as given. */
  meta?: Record<string, unknown>;
}

/** The set's own state. */
export interface DeviceSetState {
  formatVersion: 1;
  /** The next thin id to try. */
  nextDeviceId: number;
  /** The pool's transaction id as of the last committed change. */
  transactionId: string;
  base?: { deviceId: number; size: string; filesystem: string; filesystemUuid: string };
}

/** The intent written before the pool is changed (moby's "open transaction"). */
export interface OpenTransaction {
  /** The pool transaction id this change commits with set_transaction_id. */
  transactionId: string;
  op: 'create' | 'delete';
  layerId: string;
  deviceId: number;
  /** For create: the layer record to write once committed. */
  record?: LayerRecord;
}

export const BASE_LAYER = '.base';
/** Thin ids are 24-bit. */
export const MAX_THIN_ID = 0xffffff;
const LAYER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$/;
const DECIMAL = /^(0|[1-9][0-9]{0,30})$/;

/** A layer record file that could not be used, and why (see MetadataStore.scanLayers). */
export interface DamagedRecord {
  /** The file's name in the metadata directory. */
  name: string;
  path: string;
  error: MetadataError;
  /** The thin id the file names, when it names a usable one: such an id is never deleted as leaked. */
  claimedDeviceId: number | undefined;
}

/** Two or more layer records naming one thin id (a hand edit, a restore gone wrong). */
export interface ThinIdConflict {
  deviceId: number;
  layers: string[];
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function field(path: string, name: string, reason: string): never {
  throw new MetadataError(path, name, reason);
}

function checkThinId(path: string, name: string, value: unknown, min = 0): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > MAX_THIN_ID) {
    field(path, name, `${JSON.stringify(value)} is not a thin id (an integer ${min}..${MAX_THIN_ID})`);
  }
  return value;
}

function checkDecimal(path: string, name: string, value: unknown, positive = false): string {
  if (typeof value !== 'string' || !DECIMAL.test(value) || (positive && value === '0')) {
    field(path, name, `${JSON.stringify(value)} is not a ${positive ? 'positive ' : ''}decimal integer string`);
  }
  return value;
}

/** The largest length a dm table takes: u64 sectors, in bytes. */
const MAX_SIZE = ((1n << 64n) - 1n) * 512n;

/** A device size in bytes: a positive decimal string, whole 512-byte sectors, at most u64 sectors. */
function checkSize(path: string, name: string, value: unknown): string {
  const size = BigInt(checkDecimal(path, name, value, true));
  if (size % 512n !== 0n) field(path, name, `${JSON.stringify(value)} is not a whole number of 512-byte sectors`);
  if (size > MAX_SIZE) field(path, name, `${JSON.stringify(value)} is more than 2^64 - 1 sectors`);
  return value as string;
}

function checkLayerId(path: string, name: string, value: unknown): string {
  if (typeof value !== 'string' || (value !== BASE_LAYER && (!LAYER_ID.test(value) || value.includes('..')))) {
    field(path, name, `${JSON.stringify(value)} is not a layer id`);
  }
  // No layer can have it (create refuses it): `<prefix>-pool` is the pool's own dm name.
  if (RESERVED_LAYER_IDS.has(value)) field(path, name, `${JSON.stringify(value)} is reserved, not a layer id`);
  return value;
}

function checkOptionalBoolean(path: string, record: Record<string, unknown>, name: string): void {
  if (record[name] !== undefined && typeof record[name] !== 'boolean')
    field(path, name, `${JSON.stringify(record[name])} is not a boolean`);
}

/** The thin id a parsed (maybe damaged) record names, when it names a usable one. */
export function claimedThinId(value: unknown): number | undefined {
  const id = isPlainObject(value) ? value.deviceId : undefined;
  return typeof id === 'number' && Number.isInteger(id) && id >= 0 && id <= MAX_THIN_ID ? id : undefined;
}

/** A layer record as parsed from `path`, checked field by field (a MetadataError names the first bad one). */
export function validateLayerRecord(value: unknown, path: string, expectedId?: string): LayerRecord {
  if (!isPlainObject(value))
    throw new MetadataError(
      path,
      undefined,
      `holds ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}, not a layer record object`,
    );
  const id = checkLayerId(path, 'id', value.id);
  if (expectedId !== undefined && id !== expectedId)
    field(path, 'id', `${JSON.stringify(id)} does not match the file name (layer ${JSON.stringify(expectedId)})`);
  if (value.parent !== null) checkLayerId(path, 'parent', value.parent);
  if (value.parent === id) field(path, 'parent', 'a layer cannot be its own parent');
  checkThinId(path, 'deviceId', value.deviceId);
  checkSize(path, 'size', value.size);
  checkDecimal(path, 'transactionId', value.transactionId);
  checkOptionalBoolean(path, value, 'deferredDelete');
  checkOptionalBoolean(path, value, 'activated');
  if (value.meta !== undefined && !isPlainObject(value.meta)) field(path, 'meta', 'is not an object');
  return value as unknown as LayerRecord;
}

/** deviceset.json, checked field by field. */
export function validateState(value: unknown, path: string): DeviceSetState {
  if (!isPlainObject(value))
    throw new MetadataError(
      path,
      undefined,
      `holds ${value === null ? 'null' : typeof value}, not the device set's state object`,
    );
  if (value.formatVersion !== 1) field(path, 'formatVersion', `${JSON.stringify(value.formatVersion)} is not 1`);
  checkThinId(path, 'nextDeviceId', value.nextDeviceId, 1);
  checkDecimal(path, 'transactionId', value.transactionId);
  if (value.base !== undefined) {
    const base = value.base;
    if (!isPlainObject(base)) field(path, 'base', 'is not an object');
    checkThinId(path, 'base.deviceId', base.deviceId);
    checkSize(path, 'base.size', base.size);
    if (base.filesystem !== 'ext4' && base.filesystem !== 'xfs')
      field(path, 'base.filesystem', `${JSON.stringify(base.filesystem)} is not ext4 or xfs`);
    if (typeof base.filesystemUuid !== 'string') field(path, 'base.filesystemUuid', 'is not a string');
  }
  return value as unknown as DeviceSetState;
}

/** transaction.json, checked field by field. */
export function validateTransaction(value: unknown, path: string): OpenTransaction {
  if (!isPlainObject(value))
    throw new MetadataError(
      path,
      undefined,
      `holds ${value === null ? 'null' : typeof value}, not an open transaction object`,
    );
  checkDecimal(path, 'transactionId', value.transactionId, true);
  if (value.op !== 'create' && value.op !== 'delete')
    field(path, 'op', `${JSON.stringify(value.op)} is not "create" or "delete"`);
  checkLayerId(path, 'layerId', value.layerId);
  // The base is made under the crash protocol but never removed: recovering such an intent
  // would delete the thin device every new layer snapshots.
  if (value.op === 'delete' && value.layerId === BASE_LAYER)
    field(path, 'layerId', `a delete of the base device (${BASE_LAYER}) is never written: not acted on`);
  checkThinId(path, 'deviceId', value.deviceId);
  if (value.record !== undefined) {
    const record = validateLayerRecord(value.record, `${path} (record)`, value.layerId as string);
    // Recovery finishes a create with the record and advances the allocator past the intent's id.
    if (record.deviceId !== value.deviceId)
      field(path, 'record.deviceId', `${record.deviceId} is not the intent's thin id ${value.deviceId}`);
  }
  return value as unknown as OpenTransaction;
}

/**
 * One transactions.log line's value (transaction-log.ts), checked field by field: an intent,
 * the done or abandoned line that settles it, or a record or state written outside a transaction.
 */
export function validateLogEntry(value: unknown, path: string): void {
  if (!isPlainObject(value)) throw new MetadataError(path, undefined, 'is not a log entry object');
  if ('intent' in value) validateTransaction(value.intent, path);
  else if ('done' in value) {
    checkDecimal(path, 'done', value.done, true);
    validateState(value.state, path);
    if ('record' in value) validateLayerRecord(value.record, path);
    else if ('removed' in value) checkLayerId(path, 'removed', value.removed);
  } else if ('abandoned' in value) {
    checkDecimal(path, 'abandoned', value.abandoned, true);
    checkLayerId(path, 'removed', value.removed);
  } else if ('record' in value) validateLayerRecord(value.record, path);
  else if ('removed' in value) checkLayerId(path, 'removed', value.removed);
  else if ('state' in value) validateState(value.state, path);
  else throw new MetadataError(path, undefined, 'has none of intent, done, abandoned, record, removed, state');
}

/** Layer records naming the same thin id. */
export function thinIdConflicts(records: readonly LayerRecord[]): ThinIdConflict[] {
  const owner = new Map<number, string>();
  const shared = new Map<number, string[]>();
  for (const r of records) {
    const first = owner.get(r.deviceId);
    if (first === undefined) owner.set(r.deviceId, r.id);
    else shared.set(r.deviceId, [...(shared.get(r.deviceId) ?? [first]), r.id]);
  }
  return [...shared].map(([deviceId, layers]) => ({ deviceId, layers: layers.sort() }));
}

/** A MetadataError's reason, without the "metadata file …, field …: " its message starts with. */
export function reasonOf(error: MetadataError): string {
  const prefix = `metadata file ${error.file}${error.field === undefined ? '' : `, field ${JSON.stringify(error.field)}`}: `;
  return error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
}
