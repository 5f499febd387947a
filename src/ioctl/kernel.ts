// The handle every layer above src/ioctl passes down: which libc binding (FFI backend) the
// process's calls to the kernel go through. The Driver makes one from its options and hands it
// to everything it builds, so no layer below can fall back to another backend by itself.
// Creating a Kernel loads nothing: the backend is loaded by the first call that needs it
// (a worker thread that imported the package must never have loaded ffi-rs; see binding.ts).
import { InvalidArgumentError } from '../errors.js';
import type { FfiBackendName, LibcBinding } from './ffi/binding.js';
import { libcBinding } from './ffi/select.js';

export const FFI_BACKENDS: readonly FfiBackendName[] = ['ffi-rs', 'koffi'];

/** The one check of an FFI backend's name (options, DEVMAPPER_FFI, `{ ffi }` of the public API). */
export function assertFfiBackend(name: unknown, argument = 'ffi'): asserts name is FfiBackendName {
  if (!FFI_BACKENDS.includes(name as FfiBackendName)) {
    const shown = typeof name === 'string' ? JSON.stringify(name) : typeof name;
    throw new InvalidArgumentError(argument, `unknown FFI backend ${shown} (expected 'ffi-rs' or 'koffi')`);
  }
}

/** What the public API takes: an FFI backend's name, or a Kernel handle made before. */
export interface KernelOptions {
  /** FFI backend: 'ffi-rs' (default) or 'koffi'; DEVMAPPER_FFI sets the default. */
  ffi?: FfiBackendName;
  /** A handle to use as it is (it wins over `ffi`). */
  kernel?: Kernel;
}

export class Kernel {
  /** The FFI backend every call through this handle uses. */
  readonly ffi: FfiBackendName;
  #libc: LibcBinding | undefined;

  private constructor(ffi: FfiBackendName) {
    this.ffi = ffi;
  }

  /** A handle for `ffi`: an explicit choice, else DEVMAPPER_FFI, else ffi-rs. Loads nothing yet. */
  static for(ffi?: FfiBackendName): Kernel {
    if (ffi !== undefined) {
      assertFfiBackend(ffi);
      return new Kernel(ffi);
    }
    const fromEnv = process.env.DEVMAPPER_FFI || 'ffi-rs';
    assertFfiBackend(fromEnv, 'DEVMAPPER_FFI');
    return new Kernel(fromEnv);
  }

  /** `options.kernel`, else a handle for `options.ffi` (for the public entry points). */
  static from(options: KernelOptions = {}): Kernel {
    return options.kernel ?? Kernel.for(options.ffi);
  }

  /**
   * The libc binding, loaded on first use (one per backend per process).
   * @internal the layers' own way to the kernel, not part of the public API
   */
  get libc(): LibcBinding {
    this.#libc ??= libcBinding(this.ffi);
    return this.#libc;
  }
}
