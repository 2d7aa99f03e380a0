//! Admission and eviction: adaptive W-TinyLFU, pure and deterministic.
//!
//! The memory store (and the planned in-process L1) keep what will be read again by the scheme
//! Caffeine uses (Einziger, Friedman, Manes: "TinyLFU: A Highly Efficient Cache Admission
//! Policy", 2017; Caffeine's hill climber):
//!
//! - a **window** (LRU, starts at 1 % of the capacity) takes every new entry, so a burst of new
//!   keys is not rejected before it has had a chance to be read again;
//! - entries leaving the window become **candidates** for the **main** region, a segmented LRU
//!   (**probation**, then **protected** — 80 % of main — after a second access);
//! - when the cache is over capacity, a candidate is admitted only if a **frequency sketch**
//!   (4-bit count-min, 4 rows, halved every `10 × capacity` additions so old popularity fades)
//!   estimates it more popular than main's victim; a warm candidate (estimate ≥ 6) that loses
//!   to a saturated victim (estimate 15) is still admitted 1 time in 8,192, drawn from a seeded
//!   generator, so an attacker cannot pin a hot victim by flooding the sketch (Caffeine's
//!   defence, narrowed to saturated victims: see `ADMIT_HASHDOS_VICTIM`);
//! - a **hill climber** resizes the window every `10 × capacity` requests: it keeps stepping
//!   the way that raised the hit rate, decaying its step, and restarts with a large step when
//!   the hit rate moves by 5 points (recency-heavy traces grow the window, frequency-heavy ones
//!   shrink it).
//!
//! Everything is integer arithmetic on inputs: the same sequence of calls with the same seed
//! gives the same evictions on every target. Entries are caller-chosen `usize` ids (slab
//! indices); the policy keeps its own links per id and never sees keys, only a 64-bit hash.
//!
//! Weights are abstract units: the memory store charges each slot
//! `max(1, ⌈bytes · max_entries / max_bytes⌉)` against a capacity of `max_entries`, so one bound
//! in units holds both the entry bound and the byte bound.

use crate::rand::SplitMix64;

const NIL: u32 = u32::MAX;
/// A candidate at least this warm that loses admission is still admitted, by a coin that comes
/// up 1 time in [`ADMIT_HASHDOS_ODDS`].
const ADMIT_HASHDOS_THRESHOLD: u8 = 6;
/// ... but only against a victim whose estimate is saturated (15): that is the signature of the
/// flooding attack (the attacker drives a victim's counters to the maximum). Caffeine flips the
/// coin against any victim; on a loop over 1.2x the capacity that churn cost 7.6 points of hit
/// ratio here (75.0 % vs 82.7 %, the optimum is 82.5 %), so karlton narrows it.
const ADMIT_HASHDOS_VICTIM: u8 = 15;
/// The coin's odds (a power of two). On a loop every key's counters saturate between halvings,
/// so every victim qualifies, and each wrong admission cascades through the loop: against
/// Caffeine's 1 in 128 that loop (1.2x the capacity) lost 3.3 points at 1,000 entries; 1 in 1,024
/// still lost 2.6 at 10,000; 1 in 8,192 loses ≈ 0.3. A warm candidate behind a pinned victim
/// still gets in after about 8,000 contests — the defence is a guarantee of progress, and the
/// keyed sketch hash (an OS-random seed in every host) is what keeps collisions unpredictable.
const ADMIT_HASHDOS_ODDS: u64 = 8192;
/// Share of main that is protected (per mille).
const PROTECTED_PERMILLE: u64 = 800;
/// Hill climber: a hit-rate change of this many ppm restarts the step at its full size.
const RESTART_THRESHOLD_PPM: i64 = 50_000;
/// Hill climber: the full step, as a fraction of the capacity (1/16 = 6.25 %).
const STEP_DIVISOR: i64 = 16;
/// Hill climber: each step decays to 98 % of the previous one.
const STEP_DECAY_PERCENT: i64 = 98;
/// Most entries moved between regions by one resize or demotion (keeps every call bounded).
const TRANSFER_LIMIT: usize = 1_000;

/// A stable 64-bit hash of a key: the same value on every target and every build (`std`'s
/// `DefaultHasher` promises neither). `seed` keys it so a store's shard and sketch slots are
/// not predictable from the key alone.
pub fn key_hash(seed: u64, key: &str) -> u64 {
    let b = key.as_bytes();
    let mut h = seed ^ 0x243F_6A88_85A3_08D3 ^ (b.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = mix(h ^ w);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    mix(h)
}

/// The SplitMix64 / murmur3 finalizer: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 4-bit count-min sketch with periodic halving: the popularity history of TinyLFU.
///
/// One `u64` word (16 counters) per unit of capacity, in 64-byte blocks of 8 words; each
/// key's 4 counters sit in one block (one cache line). Allocated on the policy's first use, so
/// an idle store costs nothing.
#[derive(Debug, Clone)]
pub struct FrequencySketch {
    table: Vec<u64>,
    block_mask: u64,
    sample_size: u64,
    size: u64,
}

impl FrequencySketch {
    /// A sketch for a cache of `capacity` units.
    pub fn new(capacity: u64) -> FrequencySketch {
        let words = capacity.clamp(8, 1 << 26).next_power_of_two();
        FrequencySketch {
            table: vec![0; words as usize],
            block_mask: (words >> 3) - 1,
            sample_size: capacity.max(1).saturating_mul(10),
            size: 0,
        }
    }

    /// The 4 (word, nibble) positions of `hash`.
    #[inline]
    fn slots(&self, hash: u64) -> [(usize, u32); 4] {
        let block = ((hash >> 32) & self.block_mask) << 3;
        let h = mix(hash);
        let mut out = [(0, 0); 4];
        for (i, o) in out.iter_mut().enumerate() {
            let bits = h >> (i * 8);
            let word = block + ((i as u64) << 1) + (bits & 1);
            *o = (word as usize, ((bits >> 1) & 15) as u32 * 4);
        }
        out
    }

    /// Count one more occurrence of `hash`; halves everything after `10 × capacity` additions.
    pub fn increment(&mut self, hash: u64) {
        let mut added = false;
        for (w, shift) in self.slots(hash) {
            if (self.table[w] >> shift) & 15 != 15 {
                self.table[w] += 1 << shift;
                added = true;
            }
        }
        if added {
            self.size += 1;
            if self.size >= self.sample_size {
                self.reset();
            }
        }
    }

    /// Estimated occurrences of `hash` (0–15).
    pub fn frequency(&self, hash: u64) -> u8 {
        self.slots(hash).iter().map(|&(w, s)| ((self.table[w] >> s) & 15) as u8).min().unwrap_or(0)
    }

    /// Age the history: halve every counter.
    fn reset(&mut self) {
        let mut odd = 0u64;
        for w in &mut self.table {
            odd += u64::from((*w & 0x1111_1111_1111_1111).count_ones());
            *w = (*w >> 1) & 0x7777_7777_7777_7777;
        }
        self.size = (self.size - (odd >> 2)) >> 1;
    }

    /// Bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.table.len() * 8
    }
}

/// Where an entry lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// The admission window (new entries).
    Window = 0,
    /// Main, read once since it entered main.
    Probation = 1,
    /// Main, read again while in probation.
    Protected = 2,
}

/// Why an entry left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A main entry that lost to a more popular candidate (or had none to lose to).
    Evicted,
    /// A candidate from the window that was not admitted to main.
    Rejected,
    /// Heavier than the whole capacity: never kept.
    Oversized,
    /// Already dead (expired, nothing left to serve) when eviction reached it.
    Expired,
}

/// Removals so far, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvictionCounts {
    /// Main entries pushed out by admitted candidates.
    pub evicted: u64,
    /// Candidates refused admission.
    pub rejected: u64,
    /// Entries heavier than the capacity.
    pub oversized: u64,
    /// Dead entries dropped early by eviction.
    pub expired: u64,
}

impl EvictionCounts {
    /// Removals made for space (everything but `expired`).
    pub fn for_space(&self) -> u64 {
        self.evicted + self.rejected + self.oversized
    }
    fn add(&mut self, c: Cause) {
        match c {
            Cause::Evicted => self.evicted += 1,
            Cause::Rejected => self.rejected += 1,
            Cause::Oversized => self.oversized += 1,
            Cause::Expired => self.expired += 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
    weight: u32,
    region: Region,
    linked: bool,
    hash: u64,
}

const UNLINKED: Link = Link { prev: NIL, next: NIL, weight: 0, region: Region::Window, linked: false, hash: 0 };

/// The adaptive W-TinyLFU policy over caller-chosen ids. See the module docs.
///
/// Calls: [`insert`](Self::insert) a new id, [`access`](Self::access) on a read hit,
/// [`update`](Self::update) when an entry is rewritten, [`remove`](Self::remove) when the caller
/// drops an id itself; then [`evict`](Self::evict) after any insert or weight increase, which
/// hands back the ids to drop (the caller frees their data; the policy has already unlinked
/// them).
#[derive(Debug, Clone)]
pub struct WTinyLfu {
    links: Vec<Link>,
    head: [u32; 3],
    tail: [u32; 3],
    weight: [u64; 3],
    max: u64,
    /// Units held outside the lists (the memory store's generation counters): entries fit in
    /// `max - reserved`.
    reserved: u64,
    window_max: u64,
    protected_max: u64,
    sketch: Option<FrequencySketch>,
    rng: SplitMix64,
    hits: u64,
    misses: u64,
    prev_hit_ppm: i64,
    step: i64,
    counts: EvictionCounts,
}

impl WTinyLfu {
    /// A policy for `max` weight units; `seed` drives the admission coin (hash-flooding defence).
    pub fn new(max: u64, seed: u64) -> WTinyLfu {
        let max = max.max(1);
        let main = max - max.div_ceil(100).min(max);
        let window_max = max - main;
        WTinyLfu {
            links: Vec::new(),
            head: [NIL; 3],
            tail: [NIL; 3],
            weight: [0; 3],
            max,
            reserved: 0,
            window_max,
            protected_max: main * PROTECTED_PERMILLE / 1000,
            sketch: None,
            rng: SplitMix64::new(seed),
            hits: 0,
            misses: 0,
            prev_hit_ppm: 0,
            step: -((max as i64) / STEP_DIVISOR).max(1),
            counts: EvictionCounts::default(),
        }
    }

    /// Capacity in weight units.
    pub fn capacity(&self) -> u64 {
        self.max
    }

    /// Set the units held outside the lists (see [`evict`](Self::evict)); call `evict` after
    /// raising it.
    pub fn set_reserved(&mut self, units: u64) {
        self.reserved = units;
    }

    /// Units held outside the lists.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Weight held (all regions).
    pub fn total_weight(&self) -> u64 {
        self.weight.iter().sum()
    }

    /// Current window size limit (moves with the hill climber).
    pub fn window_max(&self) -> u64 {
        self.window_max
    }

    /// Removals so far, by cause.
    pub fn counts(&self) -> EvictionCounts {
        self.counts
    }

    /// The region of `id`, if it is tracked.
    pub fn region(&self, id: usize) -> Option<Region> {
        self.links.get(id).filter(|l| l.linked).map(|l| l.region)
    }

    /// Ids of a region from least to most recently used (for tests and tools).
    pub fn order(&self, r: Region) -> Vec<usize> {
        let mut out = Vec::new();
        let mut i = self.head[r as usize];
        while i != NIL {
            out.push(i as usize);
            i = self.links[i as usize].next;
        }
        out
    }

    /// Bytes the policy holds besides the caller's data (links + sketch).
    pub fn heap_bytes(&self) -> usize {
        self.links.capacity() * std::mem::size_of::<Link>()
            + self.sketch.as_ref().map_or(0, FrequencySketch::heap_bytes)
    }

    /// Estimated popularity of a key hash (0 before the first use).
    pub fn frequency(&self, hash: u64) -> u8 {
        self.sketch.as_ref().map_or(0, |s| s.frequency(hash))
    }

    fn record(&mut self, hash: u64) {
        self.sketch.get_or_insert_with(|| FrequencySketch::new(self.max)).increment(hash);
    }

    fn unlink(&mut self, i: u32) {
        let l = self.links[i as usize];
        let r = l.region as usize;
        if l.prev != NIL { self.links[l.prev as usize].next = l.next } else { self.head[r] = l.next }
        if l.next != NIL { self.links[l.next as usize].prev = l.prev } else { self.tail[r] = l.prev }
        self.weight[r] -= u64::from(l.weight);
        let l = &mut self.links[i as usize];
        l.prev = NIL;
        l.next = NIL;
        l.linked = false;
    }

    /// Append `i` at the most recently used end of `r`.
    fn push(&mut self, i: u32, r: Region) {
        let t = self.tail[r as usize];
        {
            let l = &mut self.links[i as usize];
            l.region = r;
            l.prev = t;
            l.next = NIL;
            l.linked = true;
        }
        if t != NIL { self.links[t as usize].next = i } else { self.head[r as usize] = i }
        self.tail[r as usize] = i;
        self.weight[r as usize] += u64::from(self.links[i as usize].weight);
    }

    fn move_to(&mut self, i: u32, r: Region) {
        self.unlink(i);
        self.push(i, r);
    }

    fn index(id: usize) -> u32 {
        u32::try_from(id).ok().filter(|&i| i != NIL).expect("ids are slab indices below u32::MAX")
    }

    /// Track a new entry (a miss that is being filled): window, most recent; counts its access.
    pub fn insert(&mut self, id: usize, hash: u64, weight: u32) {
        let i = Self::index(id);
        if self.links.len() <= id {
            self.links.resize(id + 1, UNLINKED);
        }
        if self.links[id].linked {
            self.unlink(i);
        }
        self.links[id] = Link { weight: weight.max(1), hash, ..UNLINKED };
        self.push(i, Region::Window);
        self.misses += 1;
        self.record(hash);
    }

    /// A read hit on `id`: count it and move it up (probation → protected).
    pub fn access(&mut self, id: usize) {
        let Some(l) = self.links.get(id).copied().filter(|l| l.linked) else { return };
        self.hits += 1;
        self.record(l.hash);
        self.promote(id as u32, l.region);
    }

    fn promote(&mut self, i: u32, r: Region) {
        match r {
            Region::Window => self.move_to(i, Region::Window),
            Region::Probation | Region::Protected => {
                self.move_to(i, Region::Protected);
                self.demote_protected();
            }
        }
    }

    /// `id` was rewritten (a fill over a lease slot, a `set` over an entry): new weight, moved up
    /// like an access, but not counted again (the read that led to the fill already was).
    pub fn update(&mut self, id: usize, weight: u32) {
        let Some(l) = self.links.get(id).copied().filter(|l| l.linked) else { return };
        self.reweigh(id, weight);
        self.promote(id as u32, l.region);
    }

    /// `id` changed weight without being used (an invalidation): reweigh it in place.
    pub fn reweigh(&mut self, id: usize, weight: u32) {
        let Some(l) = self.links.get(id).copied().filter(|l| l.linked) else { return };
        let r = l.region as usize;
        self.weight[r] = self.weight[r] - u64::from(l.weight) + u64::from(weight.max(1));
        self.links[id].weight = weight.max(1);
    }

    /// The caller dropped `id` (deleted, expired): forget it.
    pub fn remove(&mut self, id: usize) {
        if self.links.get(id).is_some_and(|l| l.linked) {
            self.unlink(id as u32);
        }
    }

    fn demote_protected(&mut self) {
        for _ in 0..TRANSFER_LIMIT {
            if self.weight[Region::Protected as usize] <= self.protected_max {
                break;
            }
            let h = self.head[Region::Protected as usize];
            if h == NIL {
                break;
            }
            self.move_to(h, Region::Probation);
        }
    }

    /// Make room: resize the window if the climber says so, move window overflow to probation
    /// as candidates, then evict (candidate vs victim by estimated frequency) until the total
    /// weight fits in the capacity less the reserved units. Never evicts `keep` unless it alone
    /// outweighs that room; entries for which `is_dead` holds go first, without a contest. The
    /// evicted ids are appended to `out`.
    pub fn evict(&mut self, keep: Option<usize>, is_dead: impl Fn(usize) -> bool, out: &mut Vec<(usize, Cause)>) {
        self.climb();
        let mut candidates = 0usize;
        while self.weight[Region::Window as usize] > self.window_max {
            let h = self.head[Region::Window as usize];
            if h == NIL {
                break;
            }
            self.move_to(h, Region::Probation);
            candidates += 1;
        }
        let keep = keep.map_or(NIL, |k| k as u32);
        let room = self.max.saturating_sub(self.reserved);
        let (mut vq, mut cq) = (Region::Probation, Region::Probation);
        let mut victim = self.head[Region::Probation as usize];
        let mut cand = self.tail[Region::Probation as usize];
        while self.total_weight() > room {
            if candidates == 0 && cq == Region::Probation {
                cand = self.head[Region::Window as usize];
                cq = Region::Window;
            }
            if cand == NIL && victim == NIL {
                match vq {
                    Region::Probation => {
                        vq = Region::Protected;
                        victim = self.head[Region::Protected as usize];
                        continue;
                    }
                    Region::Protected => {
                        vq = Region::Window;
                        victim = self.head[Region::Window as usize];
                        continue;
                    }
                    Region::Window => break,
                }
            }
            // The entry the current operation wrote stays (unless it alone is too heavy).
            if victim != NIL && victim == keep && u64::from(self.links[keep as usize].weight) <= room {
                victim = self.links[victim as usize].next;
                continue;
            }
            if cand != NIL && cand == keep && u64::from(self.links[keep as usize].weight) <= room {
                cand = self.before(cand, cq);
                candidates = candidates.saturating_sub(1);
                continue;
            }
            if cand == NIL {
                let v = victim;
                victim = self.links[v as usize].next;
                let cause = if is_dead(v as usize) { Cause::Expired } else { Cause::Evicted };
                self.drop_id(v, cause, out);
                continue;
            }
            if victim == NIL || victim == cand {
                let c = cand;
                if victim == c {
                    victim = self.links[c as usize].next;
                }
                cand = self.before(c, cq);
                candidates = candidates.saturating_sub(1);
                let cause = if is_dead(c as usize) {
                    Cause::Expired
                } else if u64::from(self.links[c as usize].weight) > room {
                    Cause::Oversized
                } else {
                    Cause::Rejected
                };
                self.drop_id(c, cause, out);
                continue;
            }
            if is_dead(victim as usize) {
                let v = victim;
                victim = self.links[v as usize].next;
                self.drop_id(v, Cause::Expired, out);
                continue;
            }
            let c = cand;
            candidates = candidates.saturating_sub(1);
            if is_dead(c as usize) {
                cand = self.before(c, cq);
                self.drop_id(c, Cause::Expired, out);
            } else if u64::from(self.links[c as usize].weight) > room {
                cand = self.before(c, cq);
                self.drop_id(c, Cause::Oversized, out);
            } else if self.admit(self.links[c as usize].hash, self.links[victim as usize].hash) {
                let v = victim;
                // The victim's successor may be the admitted candidate itself: it stays, and
                // keeps its turn as a possible later victim.
                victim = self.links[v as usize].next;
                self.drop_id(v, Cause::Evicted, out);
                // After the unlink: the candidate's predecessor may have been the victim.
                cand = self.before(c, cq);
            } else {
                cand = self.before(c, cq);
                self.drop_id(c, Cause::Rejected, out);
            }
        }
    }

    /// The next candidate after `c`: older entries of probation; the window offers only its
    /// least recently used one.
    fn before(&self, c: u32, q: Region) -> u32 {
        if q == Region::Probation { self.links[c as usize].prev } else { NIL }
    }

    fn drop_id(&mut self, i: u32, cause: Cause, out: &mut Vec<(usize, Cause)>) {
        self.unlink(i);
        self.counts.add(cause);
        out.push((i as usize, cause));
    }

    fn admit(&mut self, candidate: u64, victim: u64) -> bool {
        let (c, v) = (self.frequency(candidate), self.frequency(victim));
        if c > v {
            return true;
        }
        c >= ADMIT_HASHDOS_THRESHOLD && v >= ADMIT_HASHDOS_VICTIM && self.rng.next() % ADMIT_HASHDOS_ODDS == 0
    }

    /// The hill climber (Caffeine's): once per sample of `10 × capacity` requests, step the
    /// window size the way that last raised the hit rate.
    fn climb(&mut self) {
        let Some(sample) = self.sketch.as_ref().map(|s| s.sample_size) else {
            self.hits = 0;
            self.misses = 0;
            return;
        };
        let n = self.hits + self.misses;
        if n < sample {
            return;
        }
        #[cfg(not(target_arch = "wasm32"))]
        let hit_ppm = (u128::from(self.hits) * 1_000_000 / u128::from(n)) as i64;
        // The same quotient without a 128-bit division (wasm32 has none: `__udivti3` costs the
        // module a kilobyte).
        #[cfg(target_arch = "wasm32")]
        let hit_ppm = ppm_of(self.hits, n) as i64;
        let change = hit_ppm - self.prev_hit_ppm;
        let amount = if change >= 0 { self.step } else { -self.step };
        let full = ((self.max as i64) / STEP_DIVISOR).max(1);
        self.step = if change.abs() >= RESTART_THRESHOLD_PPM {
            if amount >= 0 { full } else { -full }
        } else {
            amount * STEP_DECAY_PERCENT / 100
        };
        self.prev_hit_ppm = hit_ppm;
        self.hits = 0;
        self.misses = 0;
        if amount > 0 {
            self.grow_window(amount as u64);
        } else if amount < 0 {
            self.shrink_window(amount.unsigned_abs());
        }
    }

    fn grow_window(&mut self, amount: u64) {
        if self.protected_max == 0 {
            return;
        }
        let mut quota = amount.min(self.protected_max);
        self.protected_max -= quota;
        self.window_max += quota;
        self.demote_protected();
        for _ in 0..TRANSFER_LIMIT {
            let mut c = self.head[Region::Probation as usize];
            if c == NIL || quota < u64::from(self.links[c as usize].weight) {
                c = self.head[Region::Protected as usize];
            }
            if c == NIL {
                break;
            }
            let w = u64::from(self.links[c as usize].weight);
            if quota < w {
                break;
            }
            quota -= w;
            self.move_to(c, Region::Window);
        }
        // Give back what could not be moved.
        self.protected_max += quota;
        self.window_max -= quota;
    }

    fn shrink_window(&mut self, amount: u64) {
        if self.window_max <= 1 {
            return;
        }
        let mut quota = amount.min(self.window_max - 1);
        self.protected_max += quota;
        self.window_max -= quota;
        for _ in 0..TRANSFER_LIMIT {
            let c = self.head[Region::Window as usize];
            if c == NIL {
                break;
            }
            let w = u64::from(self.links[c as usize].weight);
            if quota < w {
                break;
            }
            quota -= w;
            self.move_to(c, Region::Probation);
        }
        self.protected_max -= quota;
        self.window_max += quota;
    }
}

/// `floor(h * 1_000_000 / n)` mod 2^64 (what `(h as u128 * 1_000_000 / n as u128) as u64`
/// gives) with 64-bit arithmetic only: `h = qh * n + hr`, and `hr * 1_000_000 / n` by binary
/// long division over the bits of 1_000_000, every remainder kept below `n`. The wasm32 form of
/// the hit rate in [`WTinyLfu`]'s climber; compiled everywhere so the tests compare it with the
/// `u128` division.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn ppm_of(h: u64, n: u64) -> u64 {
    const M: u64 = 1_000_000;
    let (qh, hr) = (h / n, h % n);
    // Invariant: hr * (the bits of M read so far) = q * n + r, with r < n.
    let (mut q, mut r) = (0u64, 0u64);
    for bit in (0..20).rev() {
        // Double: 2r = n * c + r'.
        let c = r >= n - r;
        r = if c { r - (n - r) } else { r + r };
        q = 2 * q + u64::from(c);
        if (M >> bit) & 1 == 1 {
            let c = r >= n - hr;
            r = if c { r - (n - hr) } else { r + hr };
            q += u64::from(c);
        }
    }
    qh.wrapping_mul(M).wrapping_add(q)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_wasm32_hit_rate_division_is_the_u128_division() {
        let big = [1u64, 2, 3, 999_999, 1_000_000, 1 << 32, (1 << 44) + 7, u64::MAX / 3, u64::MAX - 1, u64::MAX];
        let mut pairs = Vec::new();
        for &n in &big {
            for &h in &big {
                pairs.push((h, n));
            }
            pairs.push((0, n));
            pairs.push((n / 2, n));
            pairs.push((n - 1, n));
        }
        let mut s = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let n = (s >> (s % 64)).max(1);
            let h = s.rotate_left(29) >> (s % 61);
            pairs.push((h, n));
            pairs.push((h % n, n));
        }
        for (h, n) in pairs {
            let want = (u128::from(h) * 1_000_000 / u128::from(n)) as u64;
            assert_eq!(super::ppm_of(h, n), want, "h = {h}, n = {n}");
        }
    }

    use super::*;

    fn run(p: &mut WTinyLfu, id: usize, hash: u64, present: &mut Vec<bool>, out: &mut Vec<(usize, Cause)>) -> bool {
        if present.len() <= id {
            present.resize(id + 1, false);
        }
        if present[id] {
            p.access(id);
            return true;
        }
        p.insert(id, hash, 1);
        present[id] = true;
        out.clear();
        p.evict(Some(id), |_| false, out);
        for &(v, _) in out.iter() {
            present[v] = false;
        }
        false
    }

    #[test]
    fn never_exceeds_capacity_and_weights_add_up() {
        let mut p = WTinyLfu::new(50, 7);
        let mut present = Vec::new();
        let mut out = Vec::new();
        let mut rng = SplitMix64::new(1);
        for _ in 0..20_000 {
            let id = (rng.next() % 400) as usize;
            run(&mut p, id, key_hash(0, &id.to_string()), &mut present, &mut out);
            assert!(p.total_weight() <= 50);
            let n = present.iter().filter(|&&b| b).count() as u64;
            assert_eq!(n, p.total_weight());
            let listed: usize = [Region::Window, Region::Probation, Region::Protected].iter().map(|&r| p.order(r).len()).sum();
            assert_eq!(listed as u64, n);
        }
    }

    #[test]
    fn a_loop_slightly_bigger_than_the_cache_keeps_most_of_it() {
        // LRU gets 0 % on a loop over 1.2x its size; frequency admission keeps a fixed set.
        let cap = 1000usize;
        let mut p = WTinyLfu::new(cap as u64, 3);
        let (mut present, mut out, mut hits) = (Vec::new(), Vec::new(), 0);
        let n = 200_000;
        for r in 0..n {
            let id = r % (cap * 12 / 10);
            if run(&mut p, id, key_hash(0, &id.to_string()), &mut present, &mut out) {
                hits += 1;
            }
        }
        assert!(hits * 100 / n > 60, "hit ratio {} %", hits * 100 / n);
    }

    #[test]
    fn a_hot_key_survives_a_scan() {
        let mut p = WTinyLfu::new(100, 1);
        let (mut present, mut out) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            for id in 0..50 {
                run(&mut p, id, key_hash(0, &id.to_string()), &mut present, &mut out);
            }
        }
        for id in 1_000..5_000 {
            run(&mut p, id, key_hash(0, &id.to_string()), &mut present, &mut out);
        }
        let kept = (0..50).filter(|&id| present[id]).count();
        assert!(kept >= 45, "hot keys kept after a scan: {kept} of 50");
    }

    #[test]
    fn an_entry_heavier_than_the_capacity_is_not_kept() {
        let mut p = WTinyLfu::new(10, 1);
        let mut out = Vec::new();
        p.insert(0, 1, 3);
        p.insert(1, 2, 11);
        p.evict(Some(1), |_| false, &mut out);
        assert_eq!(out, vec![(1, Cause::Oversized)]);
        assert_eq!(p.total_weight(), 3);
    }

    /// Issue 11: units held outside the lists (the memory store's generation counters) make
    /// entries give way; an entry heavier than the room left is not kept.
    #[test]
    fn reserved_units_make_entries_give_way() {
        let mut p = WTinyLfu::new(10, 1);
        let mut out = Vec::new();
        for id in 0..10 {
            p.insert(id, id as u64 + 1, 1);
        }
        p.evict(None, |_| false, &mut out);
        assert!(out.is_empty());
        p.set_reserved(3);
        assert_eq!(p.reserved(), 3);
        p.evict(None, |_| false, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(p.total_weight(), 7);
        out.clear();
        p.insert(10, 11, 8);
        p.evict(Some(10), |_| false, &mut out);
        assert!(out.contains(&(10, Cause::Oversized)), "8 units do not fit in the 7 left: {out:?}");
        assert!(p.total_weight() <= 7);
        out.clear();
        p.set_reserved(0);
        p.insert(11, 12, 3);
        p.evict(Some(11), |_| false, &mut out);
        assert!(out.is_empty(), "room again once the reservation is gone: {out:?}");
    }

    #[test]
    fn the_admission_coin_is_flipped_only_against_a_saturated_victim() {
        let mut p = WTinyLfu::new(1000, 5);
        for _ in 0..20 {
            p.record(1); // victim: saturated (15)
        }
        for _ in 0..7 {
            p.record(2); // candidate: warm (7)
            p.record(3); // another victim: warm, not saturated
        }
        let n = 100 * ADMIT_HASHDOS_ODDS as usize;
        let wins = (0..n).filter(|_| p.admit(2, 1)).count();
        assert!((50..=160).contains(&wins), "about 100 wins in {n} tries: {wins}");
        assert_eq!((0..n).filter(|_| p.admit(2, 3)).count(), 0, "no coin against a warm victim");
    }

    #[test]
    fn sketch_counts_saturate_and_halve() {
        let mut s = FrequencySketch::new(64);
        for _ in 0..20 {
            s.increment(42);
        }
        assert_eq!(s.frequency(42), 15);
        assert_eq!(s.frequency(43), 0);
        s.reset();
        assert_eq!(s.frequency(42), 7);
    }

    #[test]
    fn key_hash_is_stable() {
        // Pinned: a change here changes shard placement and eviction in every runtime.
        assert_eq!(key_hash(0, ""), key_hash(0, ""));
        assert_ne!(key_hash(0, "a"), key_hash(1, "a"));
        assert_ne!(key_hash(0, "user:1"), key_hash(0, "user:2"));
    }
}
