// Errors of the snapshots service and their gRPC status codes: containerd turns NOT_FOUND,
// ALREADY_EXISTS, FAILED_PRECONDITION and INVALID_ARGUMENT back into its errdefs, which its
// callers test for (a Prepare that finds the key taken, a Remove of a parent...).
import { DevmapperError, DmSystemError, InvalidArgumentError, PoolModeError } from '../errors.js';

/**
 * The gRPC status codes the service sends (grpc's doc/statuscodes.md), declared here rather than
 * imported from @grpc/grpc-js so that the records and the CLI commands that use SnapshotError
 * (`ls`, `check`) do not load the whole gRPC stack; test/host/containerd-errors.test.ts checks
 * each against grpc-js's own `status`.
 */
export const GRPC_STATUS = {
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
} as const satisfies Record<SnapshotErrorKind, GrpcStatusCode>;
/** The gRPC status a client of the snapshots service sees (one of GRPC_STATUS's values). */
export type GrpcStatusCode = 3 | 5 | 6 | 8 | 9 | 12 | 13;

export type SnapshotErrorKind =
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'INVALID_ARGUMENT'
  | 'RESOURCE_EXHAUSTED'
  | 'UNIMPLEMENTED'
  | 'INTERNAL';

/** A snapshots-API error: `code` is 'ERR_SNAPSHOT_<KIND>', `grpcCode` what the client sees. */
export class SnapshotError extends DevmapperError {
  readonly kind: SnapshotErrorKind;
  readonly grpcCode: GrpcStatusCode;
  constructor(kind: SnapshotErrorKind, message: string, options?: { cause?: unknown }) {
    super(`ERR_SNAPSHOT_${kind}`, message, options);
    this.kind = kind;
    this.grpcCode = GRPC_STATUS[kind];
  }
}

/** Any error from the core as a SnapshotError, the operation and key named in the message. */
export function toSnapshotError(error: unknown, what: string): SnapshotError {
  if (error instanceof SnapshotError) return error;
  const message = `${what}: ${(error as Error)?.message ?? String(error)}`;
  const kind = kindOf(error);
  return new SnapshotError(kind, message, { cause: error });
}

function kindOf(error: unknown): SnapshotErrorKind {
  if (error instanceof InvalidArgumentError) return 'INVALID_ARGUMENT';
  if (error instanceof DevmapperError && error.code === 'ERR_DM_METADATA_FULL') return 'RESOURCE_EXHAUSTED';
  if (error instanceof PoolModeError) return 'FAILED_PRECONDITION';
  if (error instanceof DmSystemError)
    return error.code === 'EBUSY' ? 'FAILED_PRECONDITION' : error.code === 'ENOSPC' ? 'RESOURCE_EXHAUSTED' : 'INTERNAL';
  if (error instanceof DevmapperError) {
    switch (error.code) {
      case 'ERR_DM_UNKNOWN_LAYER':
      case 'ERR_DM_UNKNOWN_PARENT':
        return 'NOT_FOUND';
      case 'ERR_DM_LAYER_EXISTS':
        return 'ALREADY_EXISTS';
      case 'ERR_DM_NO_SPACE':
      case 'ERR_DM_NO_THIN_ID':
        return 'RESOURCE_EXHAUSTED';
      case 'ERR_DM_INVALID_ARGUMENT':
        return 'INVALID_ARGUMENT';
      case 'ERR_DM_CLOSED':
        return 'FAILED_PRECONDITION';
    }
  }
  return 'INTERNAL';
}
