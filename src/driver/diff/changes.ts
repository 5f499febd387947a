// What a layer changed over its parent, found by walking both mounted trees side by side (the
// "naive diff" of Docker's graph drivers). A thin snapshot shares its parent's inodes, so an
// entry with the parent's inode number and ctime is untouched (any write, chmod, chown or
// xattr change moves ctime) and needs no further look; only the rest are compared field by field.
import { lstatSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import type { Kernel } from '../../ioctl/kernel.js';
import { getXattr, listXattrs } from '../../ioctl/file-attributes.js';
import { absolute, joinPath } from './entry-paths.js';

export type ChangeKind = 'add' | 'modify' | 'delete';

/** One change, as Docker's `Changes` reports it: the path from the layer root ('/etc/passwd'). */
export interface Change {
  path: string;
  kind: ChangeKind;
}

/** A change with what diff() needs to write it. */
export interface WalkedChange {
  /** Layer path ('etc/passwd'). */
  path: string;
  kind: ChangeKind;
  /** The entry in the layer (add, modify). */
  stat?: BigIntStats;
  /** A delete that an opaque marker of this layer already covers (no whiteout of its own). */
  coveredByOpaque?: boolean;
}

export interface WalkResult {
  changes: WalkedChange[];
  /** inode → a path of the layer where that inode is unchanged from the parent (hard-link targets of lower files). */
  unchangedLinks: Map<bigint, string>;
}

/** Extended attributes a diff carries; security.selinux is the host's labelling, system.* are ACLs of the mount. */
export function exportedXattr(name: string): boolean {
  return !name.startsWith('system.') && name !== 'security.selinux';
}

export function xattrMap(kernel: Kernel, path: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const name of listXattrs(kernel, path).filter(exportedXattr).sort()) out.set(name, getXattr(kernel, path, name));
  return out;
}

function sameXattrs(kernel: Kernel, a: string, b: string): boolean {
  const x = xattrMap(kernel, a);
  const y = xattrMap(kernel, b);
  if (x.size !== y.size) return false;
  for (const [name, value] of x) if (!y.get(name)?.equals(value)) return false;
  return true;
}

const typeBits = (st: BigIntStats): bigint => st.mode & 0o170000n;

function lstatOrNull(path: string): BigIntStats | null {
  try {
    return lstatSync(path, { bigint: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

function names(dir: string | undefined): string[] {
  if (dir === undefined) return [];
  try {
    return readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR')
      return [];
    throw error;
  }
}

/** Whether an entry present in both trees with the same type differs. */
function differs(upperPath: string, lowerPath: string, u: BigIntStats, l: BigIntStats, kernel: Kernel): boolean {
  if (u.ino === l.ino && u.ctimeNs === l.ctimeNs) return false; // untouched since the snapshot
  if (u.ino !== l.ino) return true;
  if (u.mode !== l.mode || u.uid !== l.uid || u.gid !== l.gid || u.mtimeNs !== l.mtimeNs || u.rdev !== l.rdev)
    return true;
  const dir = u.isDirectory();
  if (!dir && u.size !== l.size) return true;
  if (u.isSymbolicLink() && readlinkSync(upperPath) !== readlinkSync(lowerPath)) return true;
  if (!sameXattrs(kernel, upperPath, lowerPath)) return true;
  // Only ctime moved: a hard link to this inode was added or removed elsewhere, or the same
  // values were written again (a tar entry that names the directory again counts as a change).
  return dir || u.nlink === l.nlink;
}

/**
 * Walks `upper` (the layer's root) against `lower` (the parent's root, or undefined for a
 * layer without a parent), depth first, names sorted. `opaqueDirs` are this layer's opaque
 * directories: their content is all reported, and the lower entries they hide are marked.
 */
export function walkChanges(
  upper: string,
  lower: string | undefined,
  options: { kernel: Kernel; opaqueDirs?: readonly string[] },
): WalkResult {
  const opaque = new Set(options.opaqueDirs ?? []);
  const changes: WalkedChange[] = [];
  const unchangedLinks = new Map<bigint, string>();
  const kernel = options.kernel;

  const visit = (path: string, upperDir: string, lowerDir: string | undefined, underOpaque: boolean): void => {
    const all = new Set([...names(upperDir), ...names(lowerDir)]);
    for (const name of [...all].sort()) {
      const child = joinPath(path, name);
      const upperPath = join(upperDir, name);
      const lowerPath = lowerDir === undefined ? undefined : join(lowerDir, name);
      const u = lstatOrNull(upperPath);
      const l = lowerPath === undefined ? null : lstatOrNull(lowerPath);
      if (u === null) {
        if (l !== null) changes.push({ path: child, kind: 'delete', coveredByOpaque: underOpaque });
        continue;
      }
      const opaqueHere = opaque.has(child);
      if (l === null) {
        changes.push({ path: child, kind: 'add', stat: u });
        if (u.isDirectory()) visit(child, upperPath, undefined, false);
        continue;
      }
      if (typeBits(u) !== typeBits(l)) {
        changes.push({ path: child, kind: 'modify', stat: u });
        if (u.isDirectory()) visit(child, upperPath, undefined, false); // what the old non-directory was needs no whiteouts
        continue;
      }
      if (opaqueHere || underOpaque || differs(upperPath, lowerPath!, u, l, kernel))
        changes.push({ path: child, kind: 'modify', stat: u });
      else if (!u.isDirectory() && u.nlink > 1n && !unchangedLinks.has(u.ino)) unchangedLinks.set(u.ino, child);
      if (u.isDirectory()) visit(child, upperPath, lowerPath, opaqueHere || underOpaque);
    }
  };
  visit('', upper, lower, opaque.has(''));
  return { changes, unchangedLinks };
}

/** Docker's `Changes`: every path added, modified or deleted, sorted by path. */
export function changesOf(walk: WalkResult): Change[] {
  return walk.changes.map((c) => ({ path: absolute(c.path), kind: c.kind }));
}

/** Docker's `DiffSize`: bytes of the regular files added or modified, each inode counted once. */
export function sizeOf(walk: WalkResult): bigint {
  const seen = new Set<bigint>();
  let total = 0n;
  for (const c of walk.changes) {
    if (!c.stat?.isFile() || seen.has(c.stat.ino)) continue;
    seen.add(c.stat.ino);
    total += c.stat.size;
  }
  return total;
}
