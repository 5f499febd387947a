// Writes a layer's changes as an OCI/Docker layer tar: whiteouts for deletions, an opaque
// marker after each directory the layer made opaque, hard links where the layer has one inode
// under several names (a link to the lower file's path when that inode is unchanged there),
// xattrs as PAX records. Contents are read from disk as the tar is consumed.
import { closeSync, openSync, readSync, readlinkSync, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import type * as tar from 'tar-stream';
import type { Kernel } from '../../ioctl/kernel.js';
import { splitDev } from '../../ioctl/file-attributes.js';
import { opaqueMarkerName, whiteoutName } from './entry-paths.js';
import { xattrMap, type WalkResult } from './changes.js';
import { firstEvent, layerPack, type PackHeader } from './tar-format.js';

const CHUNK = 1 << 20;

function typeOf(st: BigIntStats): tar.Header['type'] {
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'character-device';
  if (st.isBlockDevice()) return 'block-device';
  if (st.isFIFO()) return 'fifo';
  return 'file';
}

/** A whiteout or an opaque-directory marker: an empty root-owned 0644 file. */
function markerEntry(name: string, mtime = new Date(0)): PackHeader {
  return { name, type: 'file', mode: 0o644, size: 0, mtime, uid: 0, gid: 0 };
}

/** Writes one entry and waits until the pack has taken it (its callback), content streamed in chunks. */
async function writeEntry(pack: tar.Pack, header: PackHeader, file?: string): Promise<void> {
  if (pack.destroyed) throw new Error('the diff stream was closed before its end');
  if (file === undefined) {
    await new Promise<void>((resolve, reject) =>
      pack.entry(header, Buffer.alloc(0), (error) => (error ? reject(error) : resolve())),
    ); // an empty body ends a 0-byte file entry
    return;
  }
  const sink = pack.entry(header, undefined as never);
  const done = new Promise<void>((resolve, reject) => {
    sink.once('close', resolve);
    sink.once('error', reject);
  });
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(Number(header.size ?? 0) < CHUNK ? Math.max(1, Number(header.size ?? 0)) : CHUNK);
    let left = Number(header.size ?? 0);
    while (left > 0) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, left), null);
      if (n === 0) throw new Error(`${file} shrank while it was being read`);
      left -= n;
      if (!sink.write(Buffer.from(buffer.subarray(0, n)))) {
        // A reader that stops early closes the pack: stop too, so the layer's fd is released.
        await firstEvent([
          [sink, 'drain'],
          [sink, 'close'],
          [pack, 'close'],
        ]);
        if (pack.destroyed) throw new Error('the diff stream was closed before its end');
      }
    }
  } finally {
    closeSync(fd);
  }
  sink.end(() => undefined);
  await done;
}

/**
 * Streams the tar of `walk` (changes of the tree at `upper`) into a new pack, which it
 * returns; `onEnd` runs once the last byte is written or the stream failed.
 */
export function exportChanges(
  upper: string,
  walk: WalkResult,
  options: { kernel: Kernel; opaqueDirs?: readonly string[]; onEnd?: () => Promise<void> | void },
): tar.Pack {
  const pack = layerPack();
  const opaque = new Set(options.opaqueDirs ?? []);
  const emitted = new Map<bigint, string>(); // inode → the path its content was written under
  const produce = async (): Promise<void> => {
    for (const change of walk.changes) {
      const { path } = change;
      if (change.kind === 'delete') {
        if (change.coveredByOpaque) continue;
        await writeEntry(pack, markerEntry(whiteoutName(path)));
        continue;
      }
      const st = change.stat!;
      const abs = join(upper, path);
      const type = typeOf(st);
      const header: PackHeader = {
        name: type === 'directory' ? `${path}/` : path,
        type,
        // The file-type bits keep a mode of 0 from being replaced by tar-stream's default; it writes mode & 07777.
        mode: Number(st.mode),
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtime: new Date(Number(st.mtimeNs / 1000000n)),
        size: 0,
        uname: '',
        gname: '',
      };
      const xattrs = xattrMap(options.kernel, abs);
      if (xattrs.size > 0) header.xattrs = xattrs;
      if (type === 'character-device' || type === 'block-device')
        Object.assign(header, { devmajor: splitDev(st.rdev).major, devminor: splitDev(st.rdev).minor });
      let content: string | undefined;
      if (type === 'symlink') {
        header.linkname = readlinkSync(abs);
      } else if (type !== 'directory' && st.nlink > 1n && (walk.unchangedLinks.has(st.ino) || emitted.has(st.ino))) {
        header.type = 'link';
        header.linkname = walk.unchangedLinks.get(st.ino) ?? emitted.get(st.ino)!;
      } else {
        if (type !== 'directory' && st.nlink > 1n) emitted.set(st.ino, path);
        if (type === 'file') {
          header.size = Number(st.size);
          content = abs;
        }
      }
      await writeEntry(pack, header, content && header.size! > 0 ? content : undefined);
      if (type === 'directory' && opaque.has(path)) {
        await writeEntry(pack, markerEntry(opaqueMarkerName(path), header.mtime));
      }
    }
    if (opaque.has('')) await writeEntry(pack, markerEntry(opaqueMarkerName('')));
    pack.finalize();
  };
  let producing = true;
  let closed = false;
  const end = (): void => {
    if (!producing && closed) void options.onEnd?.();
  };
  pack.once('close', () => {
    closed = true;
    end();
  });
  produce()
    .catch((error: unknown) => {
      pack.destroy(error as Error);
    })
    .finally(() => {
      producing = false;
      end();
    });
  return pack;
}
