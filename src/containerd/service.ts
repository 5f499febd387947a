// The gRPC server: containerd.services.snapshots.v1.Snapshots on a unix socket, each RPC a
// call into the Snapshotter. The .proto files under proto/ are loaded at start with
// @grpc/proto-loader (docs/containerd.md says why no generated code): messages are plain
// objects, int64 as decimal strings, enums as their names.
import { chmodSync, lstatSync, mkdirSync, rmSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Driver } from '../driver/driver.js';
import { DevmapperError } from '../errors.js';
import { logger } from '../log.js';
import { SnapshotError, toSnapshotError } from './errors.js';
import { Snapshotter, type Mount, type SnapshotInfo } from './snapshotter.js';

const PROTO_DIR = fileURLToPath(new URL('../../../proto/', import.meta.url));
const SNAPSHOTS_PROTO = 'containerd/services/snapshots/v1/snapshots.proto';
/** containerd's List answers in pages; so do we, so one reply never nears the message limit. */
const LIST_PAGE = 100;
/** Bounds what one request may carry (labels are at most 256 × 4 KiB). */
const MAX_MESSAGE_BYTES = 2 * 1024 * 1024;

export interface ServeContainerdOptions {
  driver: Driver;
  /** Path of the unix socket to listen on; a stale socket there is replaced. */
  socket: string;
}

export interface ContainerdServer {
  readonly socket: string;
  readonly snapshotter: Snapshotter;
  /** Stops taking calls and waits for those under way (graceMs, then they are cut). Leaves every device and mount in place. */
  close(graceMs?: number): Promise<void>;
}

const KIND_TO_WIRE = { active: 'ACTIVE', view: 'VIEW', committed: 'COMMITTED' } as const;

/** A google.protobuf.Timestamp from milliseconds since the epoch (a fraction carries the rest). */
export function timestamp(ms: number): { seconds: string; nanos: number } {
  let seconds = Math.floor(ms / 1000);
  let nanos = Math.round((ms - seconds * 1000) * 1e6);
  if (nanos >= 1e9) {
    seconds += 1;
    nanos -= 1e9;
  }
  return { seconds: String(seconds), nanos };
}

function wireInfo(info: SnapshotInfo): Record<string, unknown> {
  return {
    name: info.name,
    parent: info.parent,
    kind: KIND_TO_WIRE[info.kind],
    created_at: timestamp(info.created),
    updated_at: timestamp(info.updated),
    labels: info.labels,
  };
}

const wireMounts = (mounts: Mount[]): { mounts: Mount[] } => ({ mounts });

function loadService(): grpc.ServiceDefinition {
  const definition = protoLoader.loadSync(SNAPSHOTS_PROTO, {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    containerd: { services: { snapshots: { v1: { Snapshots: grpc.ServiceClientConstructor } } } };
  };
  const service = pkg.containerd.services.snapshots.v1.Snapshots.service;
  // protobufjs' reader for a Node Buffer clamps a string that runs past the end of the frame
  // (a truncated key would be served as a shorter key); its plain Uint8Array reader refuses it.
  return Object.fromEntries(
    Object.entries(service).map(([name, method]) => {
      const lenient = method.requestDeserialize;
      return [
        name,
        {
          ...method,
          requestDeserialize: (b: Buffer) => lenient(new Uint8Array(b.buffer, b.byteOffset, b.byteLength) as Buffer),
        },
      ];
    }),
  );
}

/** Starts the snapshots service for `driver` on `socket`. */
export async function serveContainerd(options: ServeContainerdOptions): Promise<ContainerdServer> {
  const { driver, socket } = options;
  if (typeof socket !== 'string' || !socket.startsWith('/'))
    throw new SnapshotError('INVALID_ARGUMENT', 'socket: must be an absolute path');
  const snapshotter = await Snapshotter.open(driver, driver.mountSettings());
  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES });
  server.addService(loadService(), handlers(snapshotter));
  prepareSocketPath(socket);
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (error) =>
      error ? reject(error) : resolve(),
    );
  });
  chmodSync(socket, 0o660); // containerd (root) connects; nobody else should
  logger.info(`containerd snapshotter listening on ${socket}`);
  let closing: Promise<void> | undefined;
  return {
    socket,
    snapshotter,
    close: (graceMs = 10_000) =>
      (closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          rmSync(socket, { force: true });
          resolve();
        });
      })),
  };
}

/** A socket left by an earlier server goes; anything else at the path is refused, not deleted. */
function prepareSocketPath(socket: string): void {
  mkdirSync(dirname(socket), { recursive: true, mode: 0o711 });
  let stat: Stats;
  try {
    stat = lstatSync(socket);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (!stat.isSocket())
    throw new DevmapperError(
      'ERR_DM_INVALID_ARGUMENT',
      `socket: ${socket} exists and is not a socket: not replacing it`,
    );
  rmSync(socket);
}

// proto-loader decodes requests into untyped objects; every handler checks the fields it reads
// (assertKey, assertLabels) before use, so `any` stops at this boundary.
// biome-ignore lint/suspicious/noExplicitAny: see above
type Unary = (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => void;

/** One handler per RPC: logs a line at debug level, maps errors to gRPC codes. */
function handlers(s: Snapshotter): grpc.UntypedServiceImplementation {
  const unary =
    // biome-ignore lint/suspicious/noExplicitAny: the untyped request, as above
      (name: string, work: (request: any) => Promise<unknown> | unknown): Unary =>
      (call, callback) => {
        const started = process.hrtime.bigint();
        const key = call.request?.key ?? call.request?.name ?? call.request?.info?.name ?? '';
        Promise.resolve()
          .then(() => work(call.request))
          .then(
            (reply) => {
              logger.debug(`${name} ${JSON.stringify(key)} ok ${elapsed(started)}`);
              callback(null, reply ?? {});
            },
            (error: unknown) => {
              const failure = toSnapshotError(error, name);
              logger.debug(`${name} ${JSON.stringify(key)} ${failure.kind} ${elapsed(started)}: ${failure.message}`);
              callback({ code: failure.grpcCode, details: failure.message });
            },
          );
      };
  return {
    Prepare: unary('Prepare', async (r) => wireMounts(await s.prepare(r.key, r.parent, r.labels))),
    View: unary('View', async (r) => wireMounts(await s.view(r.key, r.parent, r.labels))),
    Mounts: unary('Mounts', async (r) => wireMounts(await s.mounts(r.key))),
    Commit: unary('Commit', (r) => s.commit(r.name, r.key, r.labels, r.parent)),
    Remove: unary('Remove', (r) => s.remove(r.key)),
    Stat: unary('Stat', (r) => ({ info: wireInfo(s.stat(r.key)) })),
    Update: unary('Update', async (r) => {
      const info = r.info ?? { name: '', labels: {} };
      return { info: wireInfo(await s.update({ name: info.name, labels: info.labels }, r.update_mask?.paths ?? [])) };
    }),
    Usage: unary('Usage', async (r) => {
      const usage = await s.usage(r.key);
      return { size: String(usage.size), inodes: String(usage.inodes) };
    }),
    Cleanup: unary('Cleanup', () => s.cleanup()),
    // biome-ignore lint/suspicious/noExplicitAny: the untyped request, as above
    List: (call: grpc.ServerWritableStream<any, any>) => {
      const started = process.hrtime.bigint();
      try {
        const infos = s.list(call.request?.filters ?? []).map(wireInfo);
        for (let i = 0; i < infos.length; i += LIST_PAGE) call.write({ info: infos.slice(i, i + LIST_PAGE) });
        logger.debug(`List ${JSON.stringify(call.request?.filters ?? [])} ${infos.length} ${elapsed(started)}`);
        call.end();
      } catch (error) {
        const failure = toSnapshotError(error, 'List');
        logger.debug(`List ${failure.kind}: ${failure.message}`);
        call.emit('error', { code: failure.grpcCode, details: failure.message }); // grpc-js: ends the stream with this status
      }
    },
  };
}

function elapsed(started: bigint): string {
  return `${(Number(process.hrtime.bigint() - started) / 1e6).toFixed(1)} ms`;
}
