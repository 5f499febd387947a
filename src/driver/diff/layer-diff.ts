// Docker's "naive diff" driver over this project's Driver: ApplyDiff, Diff, Changes and
// DiffSize computed on mounted layers (get/put), not by the storage. The Driver's methods of
// the same names delegate here.
import { Readable } from 'node:stream';
import { InvalidArgumentError } from '../../errors.js';
import type { Kernel } from '../../ioctl/kernel.js';
import type { LayerMetadata } from '../device-set.js';
import { applyLayerTar, type ApplyResult } from './apply.js';
import { changesOf, sizeOf, walkChanges, type Change, type WalkResult } from './changes.js';
import { exportChanges } from './export.js';
import { logger } from '../../log.js';

/** What the diff functions need of a Driver. */
export interface DiffHost {
  create(id: string, parent?: string | null): Promise<void>;
  remove(id: string): Promise<void>;
  exists(id: string): Promise<boolean>;
  get(id: string): Promise<string>;
  put(id: string): Promise<void>;
  metadata(id: string): Promise<LayerMetadata>;
  setMeta(id: string, meta: Record<string, unknown> | undefined): Promise<void>;
  /** The Driver's kernel handle: xattrs, device nodes and syncfs of the diff go through it. */
  readonly kernel: Kernel;
}

/** The layer meta field where applyDiff keeps the directories its tar made opaque. */
export const OPAQUE_DIRS_META = 'devmapper.opaqueDirs';

export type LayerTarSource = Readable | AsyncIterable<Uint8Array>;

/**
 * Creates layer `id` on `parent` (unless it exists already, as after create()) and applies
 * the layer tar onto it. On any failure the layer is removed: no half-applied layer remains.
 */
export async function applyDiffDetailed(
  host: DiffHost,
  id: string,
  parent: string | null,
  tar: LayerTarSource,
): Promise<ApplyResult> {
  if (await host.exists(id)) {
    const actual = (await host.metadata(id)).parent;
    if ((actual ?? null) !== (parent ?? null))
      throw new InvalidArgumentError('parent', `layer ${id} has parent ${actual ?? 'none'}, not ${parent ?? 'none'}`);
  } else {
    await host.create(id, parent);
  }
  let result: ApplyResult;
  try {
    const root = await host.get(id);
    try {
      result = await applyLayerTar(root, tar, { kernel: host.kernel });
    } finally {
      await host.put(id);
    }
    if (result.opaqueDirs.length > 0) {
      const meta = (await host.metadata(id)).meta ?? {};
      await host.setMeta(id, { ...meta, [OPAQUE_DIRS_META]: result.opaqueDirs });
    }
  } catch (error) {
    await host.remove(id).catch(() => undefined); // the apply's error is the one to report
    throw error;
  }
  return result;
}

async function opaqueDirsOf(host: DiffHost, id: string): Promise<string[]> {
  const value = (await host.metadata(id)).meta?.[OPAQUE_DIRS_META];
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/** Mounts `id` (and `parent`), walks them, and hands the walk and the layer's root to `body`; unmounted after. */
async function withWalk<T>(
  host: DiffHost,
  id: string,
  parent: string | null | undefined,
  body: (walk: WalkResult, root: string, release: () => Promise<void>) => Promise<T>,
  keepMounted = false,
): Promise<T> {
  const opaqueDirs = await opaqueDirsOf(host, id);
  const upper = await host.get(id);
  let lower: string | undefined;
  const release = async (): Promise<void> => {
    await host.put(id);
    if (lower !== undefined) await host.put(parent!);
  };
  let handedOver = false;
  try {
    if (parent) lower = await host.get(parent);
    const walk = walkChanges(upper, lower, { opaqueDirs, kernel: host.kernel });
    const result = await body(walk, upper, release);
    handedOver = keepMounted;
    return result;
  } finally {
    if (!handedOver) await release();
  }
}

export function changes(host: DiffHost, id: string, parent: string | null | undefined): Promise<Change[]> {
  return withWalk(host, id, parent, async (walk) => changesOf(walk));
}

export function diffSize(host: DiffHost, id: string, parent: string | null | undefined): Promise<bigint> {
  return withWalk(host, id, parent, async (walk) => sizeOf(walk));
}

/** A diff tar stream; `released` resolves once its layers are unmounted again (after the stream closed). */
export type DiffStream = Readable & { released: Promise<void> };

/** The layer tar of what `id` changed over `parent`; both stay mounted until the stream ends or is destroyed. */
export async function diff(host: DiffHost, id: string, parent: string | null | undefined): Promise<DiffStream> {
  const opaqueDirs = await opaqueDirsOf(host, id);
  return withWalk(
    host,
    id,
    parent,
    async (walk, root, release) => {
      let released!: () => void;
      const done = new Promise<void>((resolve) => {
        released = resolve;
      });
      const onEnd = async (): Promise<void> => {
        try {
          await release();
        } catch (error) {
          logger.warn(`diff(${id}): releasing the mounts failed: ${(error as Error).message}`);
        } finally {
          released();
        }
      };
      const pack = exportChanges(root, walk, { opaqueDirs, kernel: host.kernel, onEnd });
      // A Node stream; destroying it closes the pack, which releases the mounts.
      return Object.assign(Readable.from(pack), { released: done });
    },
    true,
  );
}
