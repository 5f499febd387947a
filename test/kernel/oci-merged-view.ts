// What an image's layers, stacked in order, leave for a container to see: layers are described
// as lists of entries (files, directories, symlinks, hard links, whiteouts, opaque markers) and
// `mergedView` applies them the way an OCI applier does, path by path (mode, owner, size, sha256,
// symlink target, the paths sharing an inode). oci-image.ts writes the same entries as layer tars.
import { createHash } from 'node:crypto';
import { posix } from 'node:path';

export type LayerEntry =
  | { kind: 'dir'; path: string; mode?: number; uid?: number; gid?: number }
  | { kind: 'file'; path: string; content: Buffer | string; mode?: number; uid?: number; gid?: number }
  | { kind: 'symlink'; path: string; target: string; uid?: number; gid?: number }
  /** A hard link to `target` (a path in this layer, written earlier, or in a lower layer). */
  | { kind: 'hardlink'; path: string; target: string }
  /** `.wh.<name>` next to `path`: hides `path` (and all under it) of the lower layers. */
  | { kind: 'whiteout'; path: string }
  /** `<path>/.wh..wh..opq`: hides everything the lower layers have under the directory `path`. */
  | { kind: 'opaque'; path: string };

export interface ViewEntry {
  type: 'dir' | 'file' | 'symlink';
  /** Permission bits with setuid, setgid and sticky (st_mode & 07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Regular files: size in bytes and sha256 (hex) of the content. */
  size?: number;
  sha256?: string;
  /** Symlinks: the link's target as written. */
  target?: string;
  /** Regular files: every path of the view that is the same inode (itself included), sorted. */
  links?: string[];
}

/** Absolute path ('/bin/sh') → what is there. The root directory itself is not listed. */
export type MergedView = Map<string, ViewEntry>;

export const sha256Hex = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** 'a/b/' or '/a/b' → 'a/b' (the form tar entries use, relative, no trailing slash). */
export function relative(path: string): string {
  const normal = posix.normalize(`/${path}`);
  if (normal === '/') throw new Error(`layer entry path ${JSON.stringify(path)} names the root`);
  return normal.slice(1);
}

interface Inode {
  type: 'dir' | 'file' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  data?: Buffer;
  target?: string;
}

type Tree = Map<string, Inode>;

function removeSubtree(tree: Tree, path: string): void {
  tree.delete(path);
  for (const key of [...tree.keys()]) if (key.startsWith(`${path}/`)) tree.delete(key);
}

/** Applies one layer to `tree` the way an OCI applier does (whiteouts hide only lower layers). */
function applyLayer(tree: Tree, entries: readonly LayerEntry[]): void {
  const lower = new Set(tree.keys());
  for (const entry of entries) {
    const path = `/${relative(entry.path)}`;
    if (entry.kind === 'whiteout') {
      if (!lower.has(path)) throw new Error(`whiteout ${path}: nothing below to hide`);
      removeSubtree(tree, path);
    } else if (entry.kind === 'opaque') {
      if (tree.get(path)?.type !== 'dir') throw new Error(`opaque marker in ${path}: not a directory of the image`);
      for (const key of [...tree.keys()]) if (key.startsWith(`${path}/`) && lower.has(key)) tree.delete(key);
    }
  }
  for (const entry of entries) {
    const path = `/${relative(entry.path)}`;
    if (entry.kind === 'whiteout' || entry.kind === 'opaque') continue;
    const parent = posix.dirname(path);
    if (parent !== '/' && tree.get(parent)?.type !== 'dir')
      throw new Error(`${path}: parent ${parent} is not a directory in the image`);
    const existing = tree.get(path);
    if (entry.kind === 'dir') {
      const inode = { type: 'dir' as const, mode: entry.mode ?? 0o755, uid: entry.uid ?? 0, gid: entry.gid ?? 0 };
      if (existing?.type === 'dir')
        Object.assign(existing, inode); // a directory over a directory: merged
      else {
        if (existing) removeSubtree(tree, path);
        tree.set(path, inode);
      }
      continue;
    }
    if (existing) removeSubtree(tree, path); // anything else replaces what was there, a directory with all under it
    if (entry.kind === 'file') {
      tree.set(path, {
        type: 'file',
        mode: entry.mode ?? 0o644,
        uid: entry.uid ?? 0,
        gid: entry.gid ?? 0,
        data: Buffer.from(entry.content),
      });
    } else if (entry.kind === 'symlink') {
      tree.set(path, { type: 'symlink', mode: 0o777, uid: entry.uid ?? 0, gid: entry.gid ?? 0, target: entry.target });
    } else {
      const target = tree.get(`/${relative(entry.target)}`);
      if (target?.type !== 'file') throw new Error(`hard link ${path}: target ${entry.target} is not a regular file`);
      tree.set(path, target); // the same inode object
    }
  }
}

function mergedTree(layers: ReadonlyArray<readonly LayerEntry[]>): Tree {
  const tree: Tree = new Map();
  for (const layer of layers) applyLayer(tree, layer);
  return tree;
}

/** The content of every regular file the stacked layers leave. */
export function mergedContents(layers: ReadonlyArray<readonly LayerEntry[]>): Map<string, Buffer> {
  const contents = new Map<string, Buffer>();
  for (const [path, inode] of mergedTree(layers)) if (inode.type === 'file') contents.set(path, inode.data!);
  return contents;
}

/** What the layers, stacked in order (first = bottom), look like to a container. */
export function mergedView(layers: ReadonlyArray<readonly LayerEntry[]>): MergedView {
  const tree = mergedTree(layers);
  const pathsOf = new Map<Inode, string[]>();
  for (const [path, inode] of tree) pathsOf.set(inode, [...(pathsOf.get(inode) ?? []), path]);
  const view: MergedView = new Map();
  for (const path of [...tree.keys()].sort()) {
    const inode = tree.get(path)!;
    const entry: ViewEntry = { type: inode.type, mode: inode.mode, uid: inode.uid, gid: inode.gid };
    if (inode.type === 'file') {
      entry.size = inode.data!.length;
      entry.sha256 = sha256Hex(inode.data!);
      entry.links = [...pathsOf.get(inode)!].sort();
    }
    if (inode.type === 'symlink') entry.target = inode.target;
    view.set(path, entry);
  }
  return view;
}
