// Regressions found by the cross-runtime differential fuzz test (tests/differential): inputs
// where Node's answer differed from Python's, Rust's and the WASM module's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Policy } from '../index.mjs';

test('a non-finite jitter or earlyRefresh is refused naming the option (JSON would write null)', () => {
  for (const name of ['jitter', 'earlyRefresh']) {
    for (const v of [NaN, Infinity, -Infinity]) {
      assert.throws(() => new Policy({ [name]: v }), (e) => e instanceof RangeError && e.message.includes(`\`policy.${name}\``), `${name}: ${v}`);
    }
  }
});

test('a duration beyond 2^53 ms is refused as too long, naming the option (not as a JSON float)', () => {
  for (const v of [1e21, 2 ** 64, Number.MAX_VALUE]) {
    assert.throws(
      () => new Policy({ softTtl: v }),
      (e) => e instanceof RangeError && e.message.includes('`softTtl`') && e.message.includes('exceeds the maximum'),
      String(v),
    );
    assert.throws(() => new Policy({ lockBackoff: [v] }), (e) => e instanceof RangeError && e.message.includes('`lockBackoff`') && e.message.includes('exceeds the maximum'));
  }
  // the largest accepted duration still is 2^40 ms, exactly
  assert.equal(new Policy({ softTtl: 2 ** 40 }).toJSON().softTtl, 2 ** 40);
});
