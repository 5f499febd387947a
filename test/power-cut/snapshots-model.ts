// The acknowledgement log of the snapshotter power-cut test (see snapshots-guest.ts), replayed
// into what the server must list after a cut. Every line is `<kind> <json>`, written and fsync'd
// by the guest: `begin` before a gRPC call, `ack` after it returned success, `synced` once files
// written into an active snapshot were fsync'd and its filesystem unmounted, `verified` with the
// whole model after a boot checked it.
import { logEntries } from './op-log.js';

export type Kind = 'active' | 'view' | 'committed';

export interface Snap {
  kind: Kind;
  parent: string;
  labels: Record<string, string>;
  /** Files that reached the disk (name -> sha256), a parent's included. */
  files: Record<string, string>;
}

export type SnapModel = Map<string, Snap>;

/** A snapshotter call as logged: prepare/view name `key` (+ parent), commit `key` as `name`. */
export interface Call {
  op: 'prepare' | 'view' | 'commit' | 'remove';
  key: string;
  parent?: string;
  name?: string;
  labels?: Record<string, string>;
}

export interface SnapLogState {
  model: SnapModel;
  /** The last `begin` without its `ack`: the call the cut may have interrupted. */
  inFlight: Call | undefined;
}

/** Applies an acknowledged call to the model. */
export function apply(model: SnapModel, call: Call): void {
  const inherited = (parent: string | undefined) => ({ ...(parent ? model.get(parent)?.files : {}) });
  if (call.op === 'prepare' || call.op === 'view') {
    model.set(call.key, {
      kind: call.op === 'prepare' ? 'active' : 'view',
      parent: call.parent ?? '',
      labels: call.labels ?? {},
      files: inherited(call.parent),
    });
  } else if (call.op === 'commit') {
    const active = model.get(call.key);
    model.delete(call.key);
    if (active) model.set(call.name!, { ...active, kind: 'committed', labels: call.labels ?? {} });
  } else model.delete(call.key);
}

export function replaySnapshots(text: string): SnapLogState {
  const model: SnapModel = new Map();
  let inFlight: Call | undefined;
  for (const { kind, value } of logEntries(text)) {
    if (kind === 'begin') inFlight = value;
    else if (kind === 'ack') {
      inFlight = undefined;
      apply(model, value);
    } else if (kind === 'synced') Object.assign(model.get(value.key)?.files ?? {}, value.files);
    else if (kind === 'verified') {
      inFlight = undefined;
      model.clear();
      for (const [name, snap] of Object.entries(value.snapshots as Record<string, Snap>)) model.set(name, snap);
    }
  }
  return { model, inFlight };
}

/** Snapshots made from each snapshot (a snapshot with children cannot be removed). */
export function childCounts(model: SnapModel): Map<string, number> {
  const counts = new Map<string, number>();
  for (const snap of model.values()) if (snap.parent) counts.set(snap.parent, (counts.get(snap.parent) ?? 0) + 1);
  return counts;
}
