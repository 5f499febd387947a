// Tar entry names of a layer, checked before anything touches the filesystem: every name is
// made relative to the layer's root, and a name that could reach outside it is refused. The
// whiteout names of the OCI/Docker layer format are decoded here too. Pure: no I/O.
import { posix } from 'node:path';
import { LayerTarError } from '../../errors.js';

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';
/** `.wh..wh.*` other than the opaque marker: aufs bookkeeping (hard-link dirs), never content. */
const AUFS_META_PREFIX = '.wh..wh.';

/**
 * The layer-relative form of a tar name: '' for the root, else 'a/b' (no leading './', no
 * trailing or doubled '/'). Absolute names, `..` components and NUL bytes are refused, the
 * error naming `entry` (the tar entry whose name or link target `name` is).
 */
export function layerPath(name: string, what = 'path', entry = name): string {
  const shown = entry === name ? '' : ` ${JSON.stringify(name)}`;
  if (name.includes('\0')) throw unsafe(entry, `the ${what}${shown} contains a NUL byte`);
  if (name.startsWith('/')) throw unsafe(entry, `the ${what}${shown} is absolute`);
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw unsafe(entry, `the ${what}${shown} has a '..' component`);
    parts.push(part);
  }
  return parts.join('/');
}

/** The parent of a layer path ('' for a top-level name or the root). */
export function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? '' : path.slice(0, slash);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function joinPath(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/** Every ancestor of `path`, outermost first, the root ('') excluded: 'a/b/c' → ['a', 'a/b']. */
export function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) out.push(path.slice(0, i));
  return out;
}

export type EntryRole =
  | { role: 'content'; path: string }
  /** `.wh.<name>`: `path` (and everything under it) of the lower layers is hidden. */
  | { role: 'whiteout'; path: string }
  /** `<dir>/.wh..wh..opq`: what the lower layers have under `dir` is hidden. */
  | { role: 'opaque'; dir: string }
  /** aufs metadata (`.wh..wh.plnk/…`, `.wh..wh.aufs`): skipped, as Docker does. */
  | { role: 'ignored'; path: string };

/** What an entry does, from its checked layer path. */
export function entryRole(path: string, rawName = path): EntryRole {
  const name = baseName(path);
  const dir = parentOf(path);
  if (name === OPAQUE_MARKER) return { role: 'opaque', dir };
  if (ancestorsOf(path).some((a) => baseName(a).startsWith(AUFS_META_PREFIX)) || name.startsWith(AUFS_META_PREFIX))
    return { role: 'ignored', path };
  if (!name.startsWith(WHITEOUT_PREFIX)) return { role: 'content', path };
  const hidden = name.slice(WHITEOUT_PREFIX.length);
  if (hidden === '' || hidden === '.' || hidden === '..')
    throw unsafe(rawName, `a whiteout must name an entry of its directory, not ${JSON.stringify(hidden)}`);
  return { role: 'whiteout', path: joinPath(dir, hidden) };
}

/** The tar name of the whiteout that hides `path`. */
export function whiteoutName(path: string): string {
  return joinPath(parentOf(path), WHITEOUT_PREFIX + baseName(path));
}

/** The tar name of the opaque marker of directory `dir`. */
export function opaqueMarkerName(dir: string): string {
  return joinPath(dir, OPAQUE_MARKER);
}

/** '/a/b' for people and for changes(): the layer path from the root. */
export function absolute(path: string): string {
  return posix.join('/', path);
}

function unsafe(entry: string, reason: string): LayerTarError {
  return new LayerTarError('ERR_DM_LAYER_TAR_UNSAFE', entry, reason);
}
