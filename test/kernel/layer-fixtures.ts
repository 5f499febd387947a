// Layer tars for the layer tests beyond what the OCI image builder models: device nodes, a
// fifo, xattrs (a binary security.capability and user.*), a mode-0 file, a long and a UTF-8
// name, a file owned by nobody; and hostile tars that try to write outside the layer.
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { layerPack, type PackHeader } from '../../src/driver/diff/tar-format.js';

const MTIME = new Date('2024-01-01T00:00:00Z');

/** v2 file capabilities, effective, permitted = cap_setuid (7) and cap_net_raw (13): bytes ≥ 0x80 on purpose. */
export const CAPABILITY = Buffer.from([
  0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
]);

export const LONG_NAME = `special/${'deep-directory-name/'.repeat(6)}file-with-a-long-name.txt`;

async function packed(pack: tar.Pack, entries: Array<{ header: PackHeader; data?: Buffer }>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const { header, data } of entries) {
    await new Promise<void>((resolve, reject) =>
      pack.entry({ mtime: MTIME, uname: '', gname: '', ...header }, data ?? Buffer.alloc(0), (e) =>
        e ? reject(e) : resolve(),
      ),
    );
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** The special-entries layer (plain tar), to go on top of the busybox test image. */
export function specialLayer(): Promise<Buffer> {
  return packed(layerPack(), [
    {
      header: {
        name: 'special/',
        type: 'directory',
        mode: 0o755,
        xattrs: new Map([['user.dir', Buffer.from('a directory attribute')]]),
      },
    },
    { header: { name: 'special/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 } },
    { header: { name: 'special/disk', type: 'block-device', mode: 0o660, devmajor: 7, devminor: 200, gid: 6 } },
    { header: { name: 'special/fifo', type: 'fifo', mode: 0o620 } },
    {
      header: {
        name: 'special/capable',
        type: 'file',
        mode: 0o755,
        xattrs: new Map([
          ['security.capability', CAPABILITY],
          ['user.comment', Buffer.from('hello')],
        ]),
      },
      data: Buffer.from('#!/bin/sh\necho capable\n'),
    },
    // The file-type bits keep tar-stream from replacing a mode of 0 with its default.
    { header: { name: 'special/mode0', type: 'file', mode: 0o100000 }, data: Buffer.from('nobody may read this\n') },
    {
      header: { name: 'special/nobody', type: 'file', mode: 0o640, uid: 65534, gid: 65534 },
      data: Buffer.from('owned by nobody\n'),
    },
    ...LONG_NAME.split('/')
      .slice(1, -1)
      .map((_, i, dirs) => ({
        header: { name: `special/${dirs.slice(0, i + 1).join('/')}/`, type: 'directory' as const, mode: 0o755 },
      })),
    { header: { name: LONG_NAME, type: 'file', mode: 0o644 }, data: Buffer.from('a name longer than ustar holds\n') },
    { header: { name: 'special/naïve ☃.txt', type: 'file', mode: 0o644 }, data: Buffer.from('a UTF-8 name\n') },
    { header: { name: 'special/etc-link', type: 'link', linkname: 'etc/passwd', mode: 0o644 } },
  ]);
}

/** A plain tar of the given entries, written by plain tar-stream (no hooks). */
export function rawTar(entries: Array<{ header: PackHeader; data?: Buffer }>): Promise<Buffer> {
  return packed(tar.pack(), entries);
}

export interface HostileTar {
  name: string;
  tar: Buffer;
  /** The error code the apply must fail with. */
  code: 'ERR_DM_LAYER_TAR_UNSAFE' | 'ERR_DM_LAYER_TAR_INVALID';
  /** The entry the error must name (undefined: none). */
  entry?: string;
}

/** Tars that try to escape the layer, each with the error it must get. `outside` is an absolute directory outside the home. */
export async function hostileTars(outside: string): Promise<HostileTar[]> {
  const file = (name: string, text = 'pwned\n'): { header: PackHeader; data: Buffer } => ({
    header: { name, type: 'file', mode: 0o644 },
    data: Buffer.from(text),
  });
  const escapeUp = '../'.repeat(12) + outside.slice(1);
  const list: HostileTar[] = [
    {
      name: 'dot-dot path',
      tar: await rawTar([file('ok.txt'), file(`${escapeUp}/dotdot`)]),
      code: 'ERR_DM_LAYER_TAR_UNSAFE',
      entry: `${escapeUp}/dotdot`,
    },
    {
      name: 'dot-dot inside a path',
      tar: await rawTar([file('a/../../x')]),
      code: 'ERR_DM_LAYER_TAR_UNSAFE',
      entry: 'a/../../x',
    },
    {
      name: 'absolute path',
      tar: await rawTar([file(`${outside}/absolute`)]),
      code: 'ERR_DM_LAYER_TAR_UNSAFE',
      entry: `${outside}/absolute`,
    },
    {
      name: 'file through an absolute symlink',
      tar: await rawTar([
        { header: { name: 'evil', type: 'symlink', linkname: outside } },
        file('evil/through-symlink'),
      ]),
      code: 'ERR_DM_LAYER_TAR_UNSAFE',
      entry: 'evil/through-symlink',
    },
    {
      name: 'file through a relative symlink',
      tar: await rawTar([
        { header: { name: 'up', type: 'symlink', linkname: `${'../'.repeat(12)}${outside.slice(1)}` } },
        file('up/through-relative'),
      ]),
      code: 'ERR_DM_LAYER_TAR_UNSAFE',
      entry: 'up/through-relative',
    },
    {
      name: 'directory through a symlink',
      tar: await rawTar([
        { header: { name: 'd', type: 'symlink', linkname: outside } },
        { header: { name: 'd/newdir/', type: 'directory', mode: 0o755 } },
      ]),
      code: 'ERR_DM_LAYER_TAR_UNSAFE',
      entry: 'd/newdir/',
    },
    {
      name: 'hard link out of the layer',
      tar: await rawTar([{ header: { name: 'hl', type: 'link', linkname: `${escapeUp}/target` } }]),
      code: 'ERR_DM_LAYER_TAR_UNSAFE',
      entry: 'hl',
    },
    {
      name: 'hard link to an absolute path',
      tar: await rawTar([{ header: { name: 'hl', type: 'link', linkname: `${outside}/target` } }]),
      code: 'ERR_DM_LAYER_TAR_UNSAFE',
      entry: 'hl',
    },
    {
      name: 'hard link through a symlink',
      tar: await rawTar([
        { header: { name: 'via', type: 'symlink', linkname: outside } },
        { header: { name: 'hl', type: 'link', linkname: 'via/target' } },
      ]),
      code: 'ERR_DM_LAYER_TAR_UNSAFE',
      entry: 'hl',
    },
    {
      name: 'whiteout of ..',
      tar: await rawTar([file('sub/.wh...', '')]),
      code: 'ERR_DM_LAYER_TAR_UNSAFE',
      entry: 'sub/.wh...',
    },
    {
      name: 'whiteout through a symlink',
      tar: await rawTar([{ header: { name: 'w', type: 'symlink', linkname: outside } }, file('w/.wh.target', '')]),
      code: 'ERR_DM_LAYER_TAR_UNSAFE',
      entry: 'w/.wh.target',
    },
    {
      name: 'opaque marker in a symlinked directory',
      tar: await rawTar([{ header: { name: 'o', type: 'symlink', linkname: outside } }, file('o/.wh..wh..opq', '')]),
      code: 'ERR_DM_LAYER_TAR_UNSAFE',
      entry: 'o/.wh..wh..opq',
    },
  ];
  const good = gzipSync(await rawTar([file('a.txt', 'x'.repeat(200_000)), file('b.txt', 'y'.repeat(200_000))]));
  list.push({
    name: 'truncated gzip',
    tar: good.subarray(0, Math.floor(good.length / 2)),
    code: 'ERR_DM_LAYER_TAR_INVALID',
  });
  list.push({
    name: 'not a tar',
    tar: Buffer.from('this is not a tar archive, just text that goes on'.repeat(20)),
    code: 'ERR_DM_LAYER_TAR_INVALID',
  });
  return list;
}
