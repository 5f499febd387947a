// QEMU backend: placeholder until the QEMU boot path lands (see runner.ts for the contract).
import type { BootSpec } from './runner.js';

export interface QemuBootOptions { share: string; init: string; modules: string[]; memory: string }

export function bootQemu(_options: QemuBootOptions): BootSpec {
  throw new Error('the QEMU backend is not available yet; use the default UML backend');
}
