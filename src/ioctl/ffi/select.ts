// Picks the FFI backend: an explicit choice, else DEVMAPPER_FFI, else ffi-rs (the default).
// Each backend is created once per process and shared: it holds no per-handle state that matters.
import { InvalidArgumentError } from '../../errors.js';
import type { FfiBackendName, LibcBinding } from './binding.js';
import { createFfiRsBinding } from './ffi-rs.js';
import { createKoffiBinding } from './koffi.js';

const bindings = new Map<FfiBackendName, LibcBinding>();

export function libcBinding(choice?: FfiBackendName): LibcBinding {
  const name = choice ?? (process.env.DEVMAPPER_FFI || 'ffi-rs');
  if (name !== 'ffi-rs' && name !== 'koffi') {
    throw new InvalidArgumentError('ffi', `unknown FFI backend ${JSON.stringify(name)} (expected 'ffi-rs' or 'koffi')`);
  }
  let binding = bindings.get(name);
  if (!binding) {
    binding = name === 'koffi' ? createKoffiBinding() : createFfiRsBinding();
    bindings.set(name, binding);
  }
  return binding;
}
