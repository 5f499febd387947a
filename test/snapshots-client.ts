// A containerd-shaped client of the snapshots service for tests and benchmarks: the same .proto
// files, @grpc/grpc-js, calls returned as promises, errors as { code, details }.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));

export interface WireMount {
  type: string;
  source: string;
  target: string;
  options: string[];
}
export interface WireInfo {
  name: string;
  parent: string;
  kind: 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED';
  created_at: { seconds: string; nanos: number };
  updated_at: { seconds: string; nanos: number };
  labels: Record<string, string>;
}

export class SnapshotsClient {
  readonly raw: grpc.Client & Record<string, any>;

  /** `snapshotter` names the backend (containerd's own socket serves several); `namespace` goes in containerd's header. */
  constructor(
    socket: string,
    readonly snapshotter = 'dmthin',
    readonly namespace = 'default',
  ) {
    const definition = protoLoader.loadSync('containerd/services/snapshots/v1/snapshots.proto', {
      includeDirs: [PROTO_DIR],
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const pkg = grpc.loadPackageDefinition(definition) as any;
    this.raw = new pkg.containerd.services.snapshots.v1.Snapshots(
      `unix://${socket}`,
      grpc.credentials.createInsecure(),
    );
  }

  call<T = any>(method: string, request: Record<string, unknown>, metadata = new grpc.Metadata()): Promise<T> {
    metadata.set('containerd-namespace', this.namespace);
    return new Promise((resolve, reject) => {
      this.raw[method](request, metadata, (error: grpc.ServiceError | null, reply: T) =>
        error ? reject(error) : resolve(reply),
      );
    });
  }

  async prepare(key: string, parent = '', labels: Record<string, string> = {}): Promise<WireMount[]> {
    return (await this.call('Prepare', { snapshotter: this.snapshotter, key, parent, labels })).mounts;
  }
  async view(key: string, parent: string, labels: Record<string, string> = {}): Promise<WireMount[]> {
    return (await this.call('View', { snapshotter: this.snapshotter, key, parent, labels })).mounts;
  }
  async mounts(key: string): Promise<WireMount[]> {
    return (await this.call('Mounts', { snapshotter: this.snapshotter, key })).mounts;
  }
  async commit(name: string, key: string, labels: Record<string, string> = {}): Promise<void> {
    await this.call('Commit', { snapshotter: this.snapshotter, name, key, labels });
  }
  async remove(key: string): Promise<void> {
    await this.call('Remove', { snapshotter: this.snapshotter, key });
  }
  async stat(key: string): Promise<WireInfo> {
    return (await this.call('Stat', { snapshotter: this.snapshotter, key })).info;
  }
  async update(info: Partial<WireInfo> & { name: string }, paths: string[] = []): Promise<WireInfo> {
    return (await this.call('Update', { snapshotter: this.snapshotter, info, update_mask: { paths } })).info;
  }
  async usage(key: string): Promise<{ size: bigint; inodes: bigint }> {
    const r = await this.call('Usage', { snapshotter: this.snapshotter, key });
    return { size: BigInt(r.size), inodes: BigInt(r.inodes) };
  }
  async cleanup(): Promise<void> {
    await this.call('Cleanup', { snapshotter: this.snapshotter });
  }
  list(filters: string[] = []): Promise<WireInfo[]> {
    return new Promise((resolve, reject) => {
      const out: WireInfo[] = [];
      const metadata = new grpc.Metadata();
      metadata.set('containerd-namespace', this.namespace);
      const stream = this.raw.List({ snapshotter: this.snapshotter, filters }, metadata);
      stream.on('data', (page: { info: WireInfo[] }) => out.push(...page.info));
      stream.on('error', reject);
      stream.on('end', () => resolve(out));
    });
  }

  close(): void {
    this.raw.close();
  }
}
