// The layer tar stream: compression detected by magic bytes (gzip, zstd or none), tar-stream
// for the tar format, and PAX `SCHILY.xattr.*` records kept as raw bytes. tar-stream 3.2.2
// decodes and encodes PAX values as UTF-8 strings, which mangles binary values such as
// `security.capability`; the two hooks below (on its pinned internals, covered by
// test/host/layer-tar.test.ts) read and write those records byte for byte.
import { createHash, type Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import * as fzstd from 'fzstd';
import * as tar from 'tar-stream';
import { LayerTarError } from '../../errors.js';

export type Compression = 'gzip' | 'zstd' | 'none';

const XATTR_PREFIX = 'SCHILY.xattr.';
const RAW_XATTRS = Symbol('devmapper.rawXattrs');

export function compressionOf(head: Uint8Array): Compression | 'bzip2' | 'xz' {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return 'bzip2';
  if (head[0] === 0xfd && head[1] === 0x37 && head[2] === 0x7a && head[3] === 0x58) return 'xz';
  return 'none';
}

/** The uncompressed tar bytes of a layer stream, decompressed as its first bytes say. */
export async function* decompressed(source: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  const it = source[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  let done = false;
  while (head.length < 4 && !done) {
    const next = await it.next();
    if (next.done) done = true;
    else head = Buffer.concat([head, next.value]);
  }
  async function* all(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    for (;;) {
      const next = done ? { done: true as const, value: undefined } : await it.next();
      if (next.done) return;
      yield Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
    }
  }
  const kind = compressionOf(head);
  if (kind === 'bzip2' || kind === 'xz')
    throw new LayerTarError(
      'ERR_DM_LAYER_TAR_INVALID',
      undefined,
      `${kind} compression is not supported (gzip, zstd or none)`,
    );
  if (kind === 'none') {
    yield* all();
  } else if (kind === 'gzip') {
    const gunzip = createGunzip();
    const input = Readable.from(all());
    input.on('error', (error) => gunzip.destroy(error)); // pipe() alone would leave gunzip waiting
    input.pipe(gunzip);
    try {
      for await (const chunk of gunzip) yield chunk as Buffer;
    } catch (error) {
      if (error instanceof LayerTarError || !(error as { errno?: number }).errno) throw error; // not zlib's
      throw new LayerTarError('ERR_DM_LAYER_TAR_INVALID', undefined, `bad gzip stream: ${(error as Error).message}`, {
        cause: error,
      });
    }
  } else {
    yield* unzstd(all());
  }
}

async function* unzstd(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let out: Buffer[] = [];
  const stream = new fzstd.Decompress((chunk) => {
    out.push(Buffer.from(chunk));
  });
  const bad = (error: unknown): LayerTarError =>
    new LayerTarError('ERR_DM_LAYER_TAR_INVALID', undefined, `bad zstd stream: ${(error as Error).message}`, {
      cause: error,
    });
  let fed = false;
  for await (const chunk of source) {
    try {
      stream.push(chunk);
    } catch (error) {
      throw bad(error);
    }
    fed = true;
    for (const piece of out) yield piece;
    out = [];
  }
  try {
    stream.push(new Uint8Array(0), true);
  } catch (error) {
    throw bad(error);
  }
  if (!fed) throw bad(new Error('empty'));
  for (const piece of out) yield piece;
}

/** Resolves at the first of `events` on any of `emitters`, and removes every listener it added. */
export function firstEvent(
  pairs: Array<[{ once(e: string, f: () => void): unknown; off(e: string, f: () => void): unknown }, string]>,
): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      for (const [emitter, event] of pairs) emitter.off(event, done);
      resolve();
    };
    for (const [emitter, event] of pairs) emitter.once(event, done);
  });
}

/** Passes the bytes through and hashes them (the uncompressed tar's digest is a layer's diff_id). */
export async function* hashed(source: AsyncIterable<Buffer>, hash: Hash): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    hash.update(chunk);
    yield chunk;
  }
}

export const sha256 = (): Hash => createHash('sha256');

/** PAX records as raw bytes: `<len> <key>=<value>\n`. */
export function parsePaxRecords(buffer: Buffer): Array<[string, Buffer]> {
  const records: Array<[string, Buffer]> = [];
  let at = 0;
  while (at < buffer.length) {
    const space = buffer.indexOf(0x20, at);
    if (space < 0) break;
    const length = Number.parseInt(buffer.toString('latin1', at, space), 10);
    if (!(length > 0) || at + length > buffer.length) break;
    const record = buffer.subarray(space + 1, at + length - 1); // without the trailing \n
    const eq = record.indexOf(0x3d);
    if (eq > 0) records.push([record.toString('utf8', 0, eq), Buffer.from(record.subarray(eq + 1))]);
    at += length;
  }
  return records;
}

export function encodePaxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let digits = String(body.length).length;
  if (String(body.length + digits).length > digits) digits++;
  return Buffer.concat([Buffer.from(String(body.length + digits)), body]);
}

type ExtractInternals = {
  _header: { type: string };
  _pax: Record<string | symbol, unknown> | null;
  _decodeLongHeader(buf: Buffer): void;
};

/** tar-stream's extract, with each entry's PAX xattrs also kept as raw bytes (see xattrsOf). */
export function layerExtract(): tar.Extract {
  const extract = tar.extract();
  const internals = extract as unknown as ExtractInternals;
  const decode = internals._decodeLongHeader.bind(extract);
  internals._decodeLongHeader = (buf: Buffer): void => {
    decode(buf);
    if (internals._header.type === 'pax-header' && internals._pax) {
      const raw = new Map<string, Buffer>();
      for (const [key, value] of parsePaxRecords(buf))
        if (key.startsWith(XATTR_PREFIX)) raw.set(key.slice(XATTR_PREFIX.length), value);
      internals._pax[RAW_XATTRS] = raw;
    }
  };
  return extract;
}

/** The extended attributes an entry carries (PAX `SCHILY.xattr.<name>`), values as bytes. */
export function xattrsOf(header: tar.Header): Map<string, Buffer> {
  const pax = (header as { pax?: unknown }).pax as Record<string | symbol, unknown> | null | undefined;
  const raw = pax?.[RAW_XATTRS];
  if (raw instanceof Map) return raw as Map<string, Buffer>;
  const out = new Map<string, Buffer>();
  for (const [key, value] of Object.entries(pax ?? {}))
    if (key.startsWith(XATTR_PREFIX)) out.set(key.slice(XATTR_PREFIX.length), Buffer.from(String(value)));
  return out;
}

export type PackHeader = Partial<tar.Header> & { name: string; xattrs?: Map<string, Buffer> };

/** tar-stream writes uid and gid as 6 octal digits, mtime as 11. */
const USTAR_ID_MAX = 0o777777;
const USTAR_TIME_MAX = 0o77777777777;

type PackInternals = { _encode(header: PackHeader): void; push(chunk: Buffer): boolean };

/**
 * tar-stream's pack; a header with `xattrs`, or with a uid, gid or mtime that ustar cannot hold
 * (a uid past 262143, a time before 1970), is preceded by a PAX header this file writes (path,
 * linkpath, those numbers and the raw xattr values), and its own ustar fields are made to fit.
 */
export function layerPack(): tar.Pack {
  const pack = tar.pack();
  const internals = pack as unknown as PackInternals;
  const encode = internals._encode.bind(pack);
  internals._encode = (header: PackHeader): void => {
    // What ustar's fields cannot hold goes into PAX records (tar-stream would write it clamped or wrapped).
    const wide: Array<[string, string]> = [];
    if ((header.uid ?? 0) > USTAR_ID_MAX) wide.push(['uid', String(header.uid)]);
    if ((header.gid ?? 0) > USTAR_ID_MAX) wide.push(['gid', String(header.gid)]);
    const mtime = (header.mtime ?? new Date(0)).getTime() / 1000;
    if (mtime < 0 || mtime > USTAR_TIME_MAX) wide.push(['mtime', String(mtime)]);
    if ((!header.xattrs || header.xattrs.size === 0) && wide.length === 0) {
      encode(header);
      return;
    }
    const records = [encodePaxRecord('path', Buffer.from(header.name))];
    if (header.linkname) records.push(encodePaxRecord('linkpath', Buffer.from(header.linkname)));
    for (const [key, value] of wide) records.push(encodePaxRecord(key, Buffer.from(value)));
    for (const [name, value] of header.xattrs ?? []) records.push(encodePaxRecord(XATTR_PREFIX + name, value));
    const body = Buffer.concat(records);
    const ustarTime = mtime < 0 || mtime > USTAR_TIME_MAX ? new Date(0) : (header.mtime ?? new Date(0));
    internals.push(paxHeaderBlock(body.length, ustarTime));
    internals.push(body);
    if (body.length % 512 !== 0) internals.push(Buffer.alloc(512 - (body.length % 512)));
    const { xattrs: _x, pax: _p, ...plain } = header;
    encode({
      ...plain,
      name: ustarSafe(header.name),
      linkname: header.linkname ? ustarSafe(header.linkname) : header.linkname,
      uid: (header.uid ?? 0) > USTAR_ID_MAX ? 0 : header.uid,
      gid: (header.gid ?? 0) > USTAR_ID_MAX ? 0 : header.gid,
      mtime: ustarTime,
    });
  };
  return pack;
}

/** A name tar-stream can write as plain ustar (the PAX record before it holds the real one). */
function ustarSafe(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, '_');
  return ascii.length <= 99 ? ascii : ascii.slice(ascii.length - 99).replace(/^\/+/, '');
}

/** The 512-byte ustar header of a PAX extended header (typeflag 'x') of `size` bytes. */
function paxHeaderBlock(size: number, mtime: Date): Buffer {
  const block = Buffer.alloc(512);
  const octal = (value: number, width: number, at: number): void => {
    block.write(`${value.toString(8).padStart(width - 1, '0')}\0`, at, 'latin1');
  };
  block.write('PaxHeader', 0, 'latin1');
  octal(0o644, 8, 100);
  octal(0, 8, 108);
  octal(0, 8, 116);
  octal(size, 12, 124);
  octal(Math.max(0, Math.floor(mtime.getTime() / 1000)), 12, 136);
  block.write('x', 156, 'latin1');
  block.write('ustar\x0000', 257, 'latin1');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}
