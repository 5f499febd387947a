// containerd's snapshotter semantics over the Driver: every snapshot is a Driver layer (a thin
// snapshot of its parent's layer, or of SNAPSHOT_BASE_LAYER), its Info kept in the layer's
// record. Active snapshots and views hold an active dm device that containerd mounts itself;
// a committed one holds nothing in the kernel until something is prepared on it.
//
// Concurrency: each call runs under a lock of the key(s) it names, and claims what it needs
// (the key, the name, a child link on the parent) synchronously before its first await, so
// parallel calls (containerd unpacks layers in parallel) never see half-made state.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Driver } from '../driver/driver.js';
import { KeyedMutex } from '../driver/keyed-mutex.js';
import { wallClockMs } from '../ioctl/clock.js';
import { logger } from '../log.js';
import { SnapshotError, toSnapshotError } from './errors.js';
import { parseFilters } from './filters.js';
import {
  SNAPSHOT_BASE_LAYER,
  assertKey,
  checkLabels,
  fromLayer,
  layerIdFor,
  layerNumber,
  snapshotField,
  toMeta,
  type Snapshot,
  type SnapshotInfo,
  type SnapshotKind,
} from './records.js';

export interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

export interface Usage {
  size: bigint;
  inodes: bigint;
}

/** Mount details the snapshotter cannot learn from the Driver's public surface. */
export interface MountStyle {
  /** The home's filesystem: the mount type containerd is told. */
  filesystem: 'ext4' | 'xfs';
  /** The home's extra mount options (dm.mountopt). */
  mountOptions: readonly string[];
}

/**
 * busy: being made, or a name a commit reserves, invisible. committing: an active snapshot whose
 * commit is under way; Stat and List still show it as it is (containerd's store answers readers
 * from the state before an unfinished transaction), every change waits for the key's lock.
 */
type State = 'ready' | 'busy' | 'committing';

interface Entry extends Snapshot {
  state: State;
}

export class Snapshotter {
  readonly #driver: Driver;
  readonly #style: MountStyle;
  /** Active snapshots and views by key, committed ones by name: containerd's one namespace. */
  readonly #byName = new Map<string, Entry>();
  /** How many snapshots (made or being made) name each snapshot as their parent. */
  readonly #children = new Map<string, number>();
  readonly #locks = new KeyedMutex();
  #nextLayer = 1;

  private constructor(driver: Driver, style: MountStyle) {
    this.#driver = driver;
    this.#style = style;
  }

  /**
   * Serves the snapshots held in the driver's home: reads them from the layer records, makes
   * the empty base once, and finishes a commit a crash interrupted (a committed snapshot whose
   * device is still held is let go). A layer whose snapshot record is damaged is left alone.
   */
  static async open(driver: Driver, style: MountStyle): Promise<Snapshotter> {
    const snapshotter = new Snapshotter(driver, style);
    await snapshotter.#load();
    return snapshotter;
  }

  async #load(): Promise<void> {
    for (const layer of await this.#driver.list()) {
      const n = layerNumber(layer.id);
      if (n !== undefined) this.#nextLayer = Math.max(this.#nextLayer, n + 1);
      let snapshot: Snapshot | undefined;
      try {
        snapshot = fromLayer(layer);
      } catch (error) {
        logger.error(`${(error as Error).message}: not served`);
        continue;
      }
      if (!snapshot) continue;
      if (snapshot.kind === 'committed' && layer.activated) await this.#driver.deactivate(layer.id);
      this.#byName.set(snapshot.name, { ...snapshot, state: 'ready' });
    }
    for (const entry of this.#byName.values()) if (entry.parent) this.#link(entry.parent, +1);
    await this.#ensureBase();
  }

  /** The parent of every parentless snapshot: the Driver's base without mkfs's lost+found. */
  async #ensureBase(): Promise<void> {
    const base = (await this.#driver.exists(SNAPSHOT_BASE_LAYER))
      ? await this.#driver.metadata(SNAPSHOT_BASE_LAYER)
      : undefined;
    if (base?.meta?.ready === true) return;
    if (!base) await this.#driver.create(SNAPSHOT_BASE_LAYER, null, { meta: { ready: false } });
    await this.#driver.withMounted(SNAPSHOT_BASE_LAYER, (root) =>
      rmSync(join(root, 'lost+found'), { recursive: true, force: true }),
    );
    await this.#driver.setMeta(SNAPSHOT_BASE_LAYER, { ready: true });
  }

  /** Prepare: a writable snapshot on `parent` (a committed snapshot, or none). */
  prepare(key: string, parent: string, labels: Record<string, string> | undefined): Promise<Mount[]> {
    return this.#create('active', key, parent, labels);
  }

  /** View: a read-only snapshot of a committed parent. */
  view(key: string, parent: string, labels: Record<string, string> | undefined): Promise<Mount[]> {
    return this.#create('view', key, parent, labels);
  }

  #create(
    kind: 'active' | 'view',
    key: string,
    parent: string,
    labels: Record<string, string> | undefined,
  ): Promise<Mount[]> {
    const what = `${kind === 'active' ? 'prepare' : 'view'} ${JSON.stringify(key)}`;
    assertKey(key, 'key');
    const checkedLabels = checkLabels(labels, what);
    return this.#locks.run(key, async () => {
      if (this.#byName.has(key))
        throw new SnapshotError('ALREADY_EXISTS', `${what}: snapshot ${JSON.stringify(key)} already exists`);
      let origin: Entry | undefined;
      if (parent) {
        origin = this.#byName.get(parent);
        if (origin?.state !== 'ready')
          throw new SnapshotError('NOT_FOUND', `${what}: parent ${JSON.stringify(parent)} does not exist`);
        if (origin.kind !== 'committed')
          throw new SnapshotError(
            'INVALID_ARGUMENT',
            `${what}: parent ${JSON.stringify(parent)} is not a committed snapshot`,
          );
      }
      const now = wallClockMs(this.#driver.kernel);
      const entry: Entry = {
        name: key,
        parent: parent ?? '',
        kind,
        created: now,
        updated: now,
        labels: checkedLabels,
        layerId: layerIdFor(this.#nextLayer++),
        mappedBytes: undefined,
        state: 'busy',
      };
      this.#byName.set(key, entry);
      if (parent) this.#link(parent, +1);
      let made = false;
      try {
        await this.#driver.create(entry.layerId, origin?.layerId ?? SNAPSHOT_BASE_LAYER, { meta: toMeta(entry) });
        made = true;
        const mounts = await this.#mountsOf(entry);
        entry.state = 'ready';
        return mounts;
      } catch (error) {
        this.#byName.delete(key);
        if (parent) this.#link(parent, -1);
        if (made)
          await this.#driver
            .remove(entry.layerId)
            .catch((e) => logger.warn(`${what}: undoing layer ${entry.layerId}: ${e}`));
        throw toSnapshotError(error, what);
      }
    });
  }

  /** Mounts of an active snapshot or a view (its device is activated again if need be). */
  mounts(key: string): Promise<Mount[]> {
    assertKey(key, 'key');
    return this.#locks.run(key, async () => {
      const entry = this.#ready(key, `mounts ${JSON.stringify(key)}`);
      if (entry.kind === 'committed')
        throw new SnapshotError(
          'FAILED_PRECONDITION',
          `mounts ${JSON.stringify(key)}: snapshot is committed, not active or a view`,
        );
      try {
        return await this.#mountsOf(entry);
      } catch (error) {
        throw toSnapshotError(error, `mounts ${JSON.stringify(key)}`);
      }
    });
  }

  async #mountsOf(entry: Snapshot): Promise<Mount[]> {
    const device = await this.#driver.activate(entry.layerId);
    const options = [...this.#style.mountOptions];
    if (this.#style.filesystem === 'xfs') options.push('nouuid'); // every snapshot shares the base's UUID
    if (entry.kind === 'view') options.push('ro');
    return [{ type: this.#style.filesystem, source: device.path, target: '', options }];
  }

  /**
   * Commit: the active snapshot `key` becomes the committed snapshot `name` (labels replaced,
   * times reset, as containerd's own store does). The record write is the commit point; the
   * device is released after it.
   */
  commit(name: string, key: string, labels: Record<string, string> | undefined, parent = ''): Promise<void> {
    const what = `commit ${JSON.stringify(key)} as ${JSON.stringify(name)}`;
    assertKey(name, 'name');
    assertKey(key, 'key');
    const checkedLabels = checkLabels(labels, what);
    // Both locks, in one order; one lock when name and key are the same string (taking it twice
    // would wait on itself, and hold the key for good): the name then exists, ALREADY_EXISTS below.
    const [first, second] = [name, key].sort();
    const locked = (work: () => Promise<void>): Promise<void> =>
      first === second ? this.#locks.run(first!, work) : this.#locks.run(first!, () => this.#locks.run(second!, work));
    return locked(async () => {
      const entry = this.#ready(key, what);
      if (entry.kind !== 'active')
        throw new SnapshotError(
          'FAILED_PRECONDITION',
          `${what}: snapshot ${JSON.stringify(key)} is a ${entry.kind === 'view' ? 'view' : 'committed snapshot'}, not active`,
        );
      if (this.#byName.has(name))
        throw new SnapshotError('ALREADY_EXISTS', `${what}: snapshot ${JSON.stringify(name)} already exists`);
      if (parent && parent !== entry.parent)
        throw new SnapshotError(
          'INVALID_ARGUMENT',
          `${what}: its parent is ${JSON.stringify(entry.parent)}, not ${JSON.stringify(parent)} (rebasing is not supported)`,
        );
      entry.state = 'committing';
      const placeholder: Entry = { ...entry, state: 'busy' };
      this.#byName.set(name, placeholder);
      try {
        const mappedBytes = await this.#driver.mappedBytes(entry.layerId);
        const now = wallClockMs(this.#driver.kernel);
        const committed: Entry = {
          ...entry,
          name,
          kind: 'committed',
          created: now,
          updated: now,
          labels: checkedLabels,
          mappedBytes,
          state: 'ready',
        };
        await this.#driver.setMeta(entry.layerId, toMeta(committed));
        this.#byName.delete(key);
        this.#byName.set(name, committed); // an active snapshot has no children: no links move
        await this.#driver
          .deactivate(entry.layerId)
          .catch((e) => logger.warn(`${what}: releasing ${entry.layerId}: ${e}`));
      } catch (error) {
        if (this.#byName.get(name) === placeholder) this.#byName.delete(name);
        entry.state = 'ready';
        throw toSnapshotError(error, what);
      }
    });
  }

  /** Remove: any kind, by key or name; one that others were made from cannot go. */
  remove(key: string): Promise<void> {
    const what = `remove ${JSON.stringify(key)}`;
    assertKey(key, 'key');
    return this.#locks.run(key, async () => {
      const entry = this.#ready(key, what);
      const children = this.#children.get(key) ?? 0;
      if (children > 0)
        throw new SnapshotError(
          'FAILED_PRECONDITION',
          `${what}: cannot remove snapshot with child (${children} snapshot${children === 1 ? '' : 's'} made from it)`,
        );
      entry.state = 'busy';
      try {
        await this.#driver.remove(entry.layerId);
      } catch (error) {
        entry.state = 'ready';
        throw toSnapshotError(error, what);
      }
      this.#byName.delete(key);
      if (entry.parent) this.#link(entry.parent, -1);
    });
  }

  stat(key: string): SnapshotInfo {
    assertKey(key, 'key');
    const entry = this.#byName.get(key);
    return infoOf(entry?.state === 'committing' ? entry : this.#ready(key, `stat ${JSON.stringify(key)}`));
  }

  /**
   * Update: only labels can change, all of them (`labels`, or no paths) or one at a time
   * (`labels.<key>`; an absent value removes the label). Returns the updated info.
   */
  update(
    info: { name: string; labels: Record<string, string> | undefined },
    paths: readonly string[],
  ): Promise<SnapshotInfo> {
    const what = `update ${JSON.stringify(info.name)}`;
    assertKey(info.name, 'info.name');
    const given = checkLabels(info.labels, what);
    return this.#locks.run(info.name, async () => {
      const entry = this.#ready(info.name, what);
      let labels = { ...entry.labels };
      if (paths.length === 0) labels = given;
      for (const path of paths) {
        if (path === 'labels') labels = { ...given };
        else if (path.startsWith('labels.') && path.length > 7) {
          const label = path.slice(7);
          if (Object.hasOwn(given, label)) labels[label] = given[label]!;
          else delete labels[label];
        } else {
          throw new SnapshotError(
            'INVALID_ARGUMENT',
            `${what}: cannot update field ${JSON.stringify(path)} (only labels and labels.<key>)`,
          );
        }
      }
      checkLabels(labels, what);
      const next: Entry = { ...entry, labels, updated: wallClockMs(this.#driver.kernel) };
      try {
        await this.#driver.setMeta(entry.layerId, toMeta(next));
      } catch (error) {
        throw toSnapshotError(error, what);
      }
      this.#byName.set(info.name, next);
      return infoOf(next);
    });
  }

  /** Every snapshot matching containerd's filters (any of them; none matches all). */
  list(filters: readonly string[]): SnapshotInfo[] {
    const filter = parseFilters(filters);
    const out: SnapshotInfo[] = [];
    for (const entry of this.#byName.values()) {
      if (entry.state === 'busy') continue;
      const info = infoOf(entry);
      if (filter((path) => snapshotField(info, path))) out.push(info);
    }
    return out;
  }

  /**
   * Usage: the bytes the snapshot's layer maps beyond what its parent mapped when committed
   * (containerd's devmapper snapshotter counts the same way); inodes are not known (0).
   */
  usage(key: string): Promise<Usage> {
    const what = `usage ${JSON.stringify(key)}`;
    assertKey(key, 'key');
    return this.#locks.run(key, async () => {
      const entry = this.#ready(key, what);
      let mapped: bigint;
      try {
        mapped =
          entry.kind === 'committed' && entry.mappedBytes !== undefined
            ? entry.mappedBytes
            : await this.#driver.mappedBytes(entry.layerId);
      } catch (error) {
        throw toSnapshotError(error, what);
      }
      const parentMapped = entry.parent ? (this.#byName.get(entry.parent)?.mappedBytes ?? 0n) : 0n;
      return { size: mapped > parentMapped ? mapped - parentMapped : 0n, inodes: 0n };
    });
  }

  /** Cleanup: lets go of devices that committed snapshots still hold (a crash mid-commit). */
  async cleanup(): Promise<void> {
    for (const layer of await this.#driver.list()) {
      if (!layer.activated) continue;
      const entry = [...this.#byName.values()].find((e) => e.layerId === layer.id);
      if (entry?.kind === 'committed' && entry.state === 'ready') await this.#driver.deactivate(layer.id);
    }
  }

  #ready(key: string, what: string): Entry {
    const entry = this.#byName.get(key);
    if (entry?.state !== 'ready')
      throw new SnapshotError('NOT_FOUND', `${what}: snapshot ${JSON.stringify(key)} does not exist`);
    return entry;
  }

  #link(parent: string, delta: number): void {
    const n = (this.#children.get(parent) ?? 0) + delta;
    if (n > 0) this.#children.set(parent, n);
    else this.#children.delete(parent);
  }
}

function infoOf(entry: Snapshot): SnapshotInfo {
  const { name, parent, kind, created, updated, labels } = entry;
  return { name, parent, kind, created, updated, labels: { ...labels } };
}

export type { SnapshotInfo, SnapshotKind };
