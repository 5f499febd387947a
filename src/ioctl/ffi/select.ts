// The loaded backends: each is created once per process, on first use, and shared (it holds no
// per-handle state that matters). The name is checked by Kernel (src/ioctl/kernel.ts) before
// it gets here.
import type { FfiBackendName, LibcBinding } from './binding.js';
import { createFfiRsBinding } from './ffi-rs.js';
import { createKoffiBinding } from './koffi.js';

const bindings = new Map<FfiBackendName, LibcBinding>();

export function libcBinding(name: FfiBackendName): LibcBinding {
  let binding = bindings.get(name);
  if (!binding) {
    binding = name === 'koffi' ? createKoffiBinding() : createFfiRsBinding();
    bindings.set(name, binding);
  }
  return binding;
}
