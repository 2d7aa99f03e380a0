// ES module entry point: `import { Cache, Key, Policy } from 'karlton'`.
// One implementation (lib/karlton.cjs) so both entry points share classes and the native addon.
import karlton from './lib/karlton.cjs';

export const { Key, Policy, MemoryStore, RedisStore, Cache, KarltonError, jsonCodec, describeEntry, paramsHash, internals } = karlton;
export default karlton;
