// Shared by the JavaScript runners: read cases (JSONL) from stdin, rebuild encoded values as the
// JavaScript values a user would pass, write answers (JSONL) to stdout. See gen.py for the
// encoding and README.md for the answer form.

import { readFileSync, writeSync } from 'node:fs';

/** An encoded value as a JavaScript value: integers beyond 2^53 become bigints (a user's only exact form). */
export function val(v) {
  if (v === null) return null;
  if ('s' in v) return str(v.s);
  if ('i' in v) {
    const b = BigInt(v.i);
    const n = Number(b);
    return Number.isSafeInteger(n) ? n : b;
  }
  if ('f' in v) return v.f === 'nan' ? NaN : v.f === 'inf' ? Infinity : v.f === '-inf' ? -Infinity : Number(v.f);
  if ('b' in v) return v.b;
  if ('a' in v) return v.a.map(val);
  if ('o' in v) {
    const o = {};
    // defineProperty: a "__proto__" member is an own member, as JSON.parse makes it
    for (const [k, x] of v.o) Object.defineProperty(o, str(k), { value: val(x), enumerable: true, writable: true, configurable: true });
    return o;
  }
  if ('n' in v) {
    const [depth, kind, leaf] = v.n;
    let out = val(leaf);
    for (let i = 0; i < depth; i++) out = kind === 'a' ? [out] : { k: out };
    return out;
  }
  throw new Error(`bad encoded value ${JSON.stringify(v)}`);
}

export function str(units) {
  let s = '';
  for (let i = 0; i < units.length; i += 4096) s += String.fromCharCode(...units.slice(i, i + 4096));
  return s;
}

/** Answers every case of stdin with `answer(case)` (which returns the ok value or throws). */
export async function run(answer) {
  const text = readFileSync(0, 'utf8');
  const out = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const c = JSON.parse(line);
    let a;
    try {
      a = { id: c.id, ok: await answer(c) };
    } catch (e) {
      a = { id: c.id, err: e?.detail?.field ?? null, msg: `${e?.name}: ${e?.message}` };
      if (e?.code) a.code = e.code;
      if (e?.detail?.kind) a.kind = e.detail.kind;
    }
    out.push(JSON.stringify(a, (_, x) => (typeof x === 'bigint' ? x.toString() : x)));
  }
  const buf = Buffer.from(out.join('\n') + '\n');
  let off = 0;
  while (off < buf.length) off += writeSync(1, buf, off);
}

/** A decoded entry in the answer form (u64s as decimal strings, the value as hex). */
export function entryForm(e, hexValue) {
  const s = (x) => (x === null || x === undefined ? null : String(x));
  return {
    value: hexValue,
    codec: Number(e.codec),
    version: s(e.version),
    generations: e.generations.map(String),
    soft_at: String(e.soft_at),
    hard_at: String(e.hard_at),
    load_ms: String(e.load_ms),
    negative: e.negative,
    tags: e.tags,
  };
}

/** A describe answer in the answer form (u64s as decimal strings). */
export function infoForm(i) {
  const s = (x) => (x === null || x === undefined ? null : String(x));
  return {
    freshness: i.freshness,
    soft_at: s(i.soft_at),
    hard_at: s(i.hard_at),
    usable_until: s(i.usable_until),
    load_ms: s(i.load_ms),
    version: s(i.version),
    negative: i.negative,
    codec: Number(i.codec),
    value_len: Number(i.value_len),
    generations: i.generations.map(String),
    tags: i.tags,
  };
}
