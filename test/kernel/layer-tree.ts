// Reference views for the layer tests: a directory tree read entry by entry (type, mode,
// owner, content digest, link target, device numbers, xattrs by Python, hard-link groups), the entries of
// a layer tar read with tar-stream (independently of the code under test's own reader), and
// `umoci unpack` of an OCI image-layout tarball as the reference unpack of the same image.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import * as tar from 'tar-stream';

export interface TreeEntry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  target?: string;
  rdev?: string;
  /** user.* and security.capability, hex. */
  xattrs?: Record<string, string>;
  /** Other paths of the tree with the same inode. */
  links?: string[];
}

const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

function typeOf(st: ReturnType<typeof lstatSync>): string {
  if (!st) return 'none';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'file';
}

/** user.* and security.capability of every entry under `root`, read by Python's os.getxattr (independent of the code under test). */
const XATTR_DUMP = `
import json, os, sys
root = sys.argv[1]
out = {}
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        p = os.path.join(d, n)
        names = [x for x in os.listxattr(p, follow_symlinks=False) if x.startswith('user.') or x == 'security.capability']
        if names:
            out['/' + os.path.relpath(p, root)] = {x: os.getxattr(p, x, follow_symlinks=False).hex() for x in sorted(names)}
print(json.dumps(out))
`;

function allXattrs(root: string): Record<string, Record<string, string>> {
  return JSON.parse(execFileSync('python3', ['-c', XATTR_DUMP, root], { encoding: 'utf8' })) as Record<
    string,
    Record<string, string>
  >;
}

/** Every entry under `root` ('/a/b' → entry), the root itself left out. */
export function treeView(root: string, options: { xattrs?: boolean } = {}): Map<string, TreeEntry> {
  const view = new Map<string, TreeEntry>();
  const xattrs = options.xattrs === false ? {} : allXattrs(root);
  const inodes = new Map<number, string[]>();
  const walk = (dir: string, prefix: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const abs = join(dir, name);
      const path = `${prefix}/${name}`;
      const st = lstatSync(abs);
      const entry: TreeEntry = { type: typeOf(st), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      if (entry.type === 'file') {
        const data = readFileSync(abs);
        entry.size = data.length;
        entry.sha256 = sha(data);
        inodes.set(st.ino, [...(inodes.get(st.ino) ?? []), path]);
      }
      if (entry.type === 'symlink') entry.target = readlinkSync(abs);
      if (entry.type === 'char' || entry.type === 'block') entry.rdev = String(st.rdev);
      if (xattrs[path]) entry.xattrs = xattrs[path];
      view.set(path, entry);
      if (entry.type === 'dir') walk(abs, path);
    }
  };
  walk(root, '');
  for (const paths of inodes.values()) {
    if (paths.length < 2) continue;
    for (const p of paths) view.get(p)!.links = paths.filter((q) => q !== p);
  }
  return view;
}

export interface TarEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  sha256?: string;
  linkname?: string;
  device?: string;
  /** PAX SCHILY.xattr.* keys (values as tar-stream decodes them). */
  xattrs?: string[];
}

/** A layer tar's entries in order, names without './' and trailing '/'. */
export async function tarEntries(layer: Buffer): Promise<TarEntry[]> {
  const plain = layer[0] === 0x1f && layer[1] === 0x8b ? gunzipSync(layer) : layer;
  const extract = tar.extract();
  const entries: TarEntry[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      const h = entry.header;
      const data = Buffer.concat(chunks);
      const xattrs = Object.keys((h.pax ?? {}) as object)
        .filter((k) => k.startsWith('SCHILY.xattr.'))
        .sort();
      entries.push({
        name: h.name.replace(/^(\.\/)+/, '').replace(/\/$/, ''),
        type: h.type,
        mode: h.mode & 0o7777,
        uid: h.uid,
        gid: h.gid,
        size: data.length,
        ...(h.type === 'file' ? { sha256: sha(data) } : {}),
        ...(h.linkname ? { linkname: h.linkname.replace(/^(\.\/)+/, '') } : {}),
        ...(h.type === 'character-device' || h.type === 'block-device'
          ? { device: `${h.devmajor}:${h.devminor}` }
          : {}),
        ...(xattrs.length > 0 ? { xattrs } : {}),
      });
    }
  })();
  extract.end(plain);
  await done;
  return entries;
}

/** `umoci unpack` of an OCI image-layout tarball: returns the unpacked rootfs. */
export function umociUnpack(tarball: string, tag: string, work: string): string {
  const layout = join(work, 'layout');
  const bundle = join(work, 'bundle');
  mkdirSync(layout, { recursive: true });
  execFileSync('tar', ['-xf', tarball, '-C', layout]);
  execFileSync('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle], { stdio: ['ignore', 'pipe', 'pipe'] });
  return join(bundle, 'rootfs');
}

/** The differences between two views, one line each (empty when they agree). */
export function viewDifferences(actual: Map<string, TreeEntry>, expected: Map<string, TreeEntry>): string[] {
  const out: string[] = [];
  for (const [path, want] of expected) {
    const got = actual.get(path);
    if (!got) out.push(`${path}: missing`);
    else if (JSON.stringify(got) !== JSON.stringify(want))
      out.push(`${path}: ${JSON.stringify(got)} != ${JSON.stringify(want)}`);
  }
  for (const path of actual.keys()) if (!expected.has(path)) out.push(`${path}: unexpected`);
  return out;
}
