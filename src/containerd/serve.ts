// The package's serveContainerd: the gRPC stack (@grpc/grpc-js, proto-loader, the .proto files)
// is loaded on the first call, not when the package is imported, so a program that only drives
// the Driver (or a CLI command other than `serve`) never pays for it.
import type { ContainerdServer, ServeContainerdOptions } from './service.js';

/** Serves a Driver's home to containerd as a proxy snapshotter (see service.ts). */
export async function serveContainerd(options: ServeContainerdOptions): Promise<ContainerdServer> {
  const service = await import('./service.js');
  return service.serveContainerd(options);
}
