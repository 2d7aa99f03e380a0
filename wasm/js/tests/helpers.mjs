// Shared by the node:test files: finding and loading the built module.
import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { load } from "../karlton-wasm.mjs";

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = join(here, "..", "..", "..");
export const distDir = join(repoRoot, "wasm", "dist");
export const modulePath = process.env.KARLTON_WASM ?? join(distDir, "karlton.wasm");

export function moduleBytes() {
  if (!existsSync(modulePath)) {
    throw new Error(`${modulePath} not found: build it with scripts/test-wasm.sh`);
  }
  return readFileSync(modulePath);
}

let compiled;
export function compiledModule() {
  compiled ??= new WebAssembly.Module(moduleBytes());
  return compiled;
}

export async function fresh() {
  return load(compiledModule());
}
