//! The request traces: deterministic, seeded, generated in memory (no trace files).
//!
//! Every trace is a list of [`Req`]s over 64-bit key ids; the caches see the key
//! `bench:{id}`. Ids are scrambled ranks ([`scramble`]), so a key's popularity says nothing
//! about its id (nor about its shard or hash slot in any of the caches).

/// Keys in the Zipf universes (and YCSB's `recordcount`).
pub const KEYS: usize = 1_000_000;

/// Every trace name, in the order they run.
pub const TRACES: &[&str] = &[
    "zipf-0.8",
    "zipf-0.99",
    "zipf-1.2",
    "zipf-scan",
    "loop-1.2x",
    "loop-2x",
    "shifting",
    "ycsb-d",
];

/// The base seed: ASCII "karlton\0". A trace's generator is seeded with
/// `SEED ^ name.len()` (so `zipf-0.99` and `zipf-scan` draw the same Zipf sequence, and the
/// scan is the only difference between them).
pub const SEED: u64 = 0x6b61_726c_746f_6e00;

/// SplitMix64: the traces' only randomness (seeded, so every run sees the same requests).
pub struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1), 53 bits.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s) over ranks `0..n` (rank 0 the most popular: `P(r) ∝ 1/(r+1)^s`), sampled by
/// inverse CDF: the CDF is computed once per exponent, each draw is a binary search.
pub struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for r in 1..=n {
            acc += 1.0 / (r as f64).powf(s);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf(cdf)
    }
    fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1) as u64
    }
}

/// The Zipf CDFs built so far, by exponent (built once per run, shared by the traces).
#[derive(Default)]
pub struct ZipfCache(Vec<(u64, Zipf)>);

impl ZipfCache {
    fn get(&mut self, s: f64) -> &Zipf {
        let k = s.to_bits();
        let i = match self.0.iter().position(|(b, _)| *b == k) {
            Some(i) => i,
            None => {
                self.0.push((k, Zipf::new(KEYS, s)));
                self.0.len() - 1
            }
        };
        &self.0[i].1
    }
}

/// Rank → key id: multiply by an odd constant (a bijection on u64), drop the low 8 bits.
/// `salt` gives a trace (or a shifting epoch) its own id space.
fn scramble(rank: u64, salt: u64) -> u64 {
    (rank ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 8
}

/// One request.
#[derive(Clone, Copy)]
pub enum Req {
    /// A read of this key id: a hit or a miss (then the value is loaded and stored).
    Read(u64),
    /// A write (insert) of this key id: stored, counted neither as a hit nor as a miss.
    Write(u64),
}

/// Whether the trace depends on the capacity (the loops do; the others are generated once).
pub fn depends_on_capacity(name: &str) -> bool {
    name.starts_with("loop-")
}

/// `n` requests of trace `name` for a cache of `cap` entries.
pub fn trace(name: &str, cap: usize, n: usize, zipfs: &mut ZipfCache) -> Vec<Req> {
    let mut rng = Rng(SEED ^ name.len() as u64);
    let mut out = Vec::with_capacity(n);
    match name {
        // Independent requests, Zipf(s) popularity over 1 M keys: the classic model of web,
        // CDN and object-cache traffic (Breslau et al., INFOCOM 1999).
        "zipf-0.8" | "zipf-0.99" | "zipf-1.2" => {
            let z = zipfs.get(name[5..].parse().expect("exponent"));
            for _ in 0..n {
                out.push(Req::Read(scramble(z.sample(&mut rng), 0)));
            }
        }
        // Zipf 0.99 interrupted by scans: whenever the request count reaches a multiple of
        // 100,000, 50,000 never-seen keys are read once each (a batch job or crawler walking
        // the keyspace). The scan requests count in `n`: the first scan starts at request
        // 100,000, then one starts every 100,000 requests (50 k Zipf + 50 k scan), so a third
        // of 1.5 M requests are scan reads (500 k) and at most 66.7 % can hit.
        "zipf-scan" => {
            let z = zipfs.get(0.99);
            let mut cold = 1u64 << 50;
            while out.len() < n {
                if out.len() % 100_000 == 0 && !out.is_empty() {
                    for _ in 0..50_000 {
                        cold += 1;
                        out.push(Req::Read(cold));
                    }
                }
                out.push(Req::Read(scramble(z.sample(&mut rng), 0)));
            }
            out.truncate(n);
        }
        // A loop over 1.2× / 2× the capacity, in the same order every pass (a periodic job
        // reading a table slightly larger than the cache). LRU hits 0 %; the optimum (Belady)
        // is about (cap − 1)/(len − 1): 83 % and 50 %.
        "loop-1.2x" | "loop-2x" => {
            let len = if name == "loop-2x" {
                cap * 2
            } else {
                cap * 12 / 10
            } as u64;
            for i in 0..n as u64 {
                out.push(Req::Read(scramble(i % len, 7)));
            }
        }
        // Zipf 0.99 whose hot set moves: every 250,000 requests the ranks map to a fresh set of
        // key ids (a new salt), so the old hot keys are never read again (news, trending items).
        "shifting" => {
            let z = zipfs.get(0.99);
            for i in 0..n {
                let salt = (i / 250_000) as u64 * 0x1234_5678_9abc;
                out.push(Req::Read(scramble(z.sample(&mut rng), salt)));
            }
        }
        "ycsb-d" => ycsb_d(&mut rng, n, &mut out),
        other => panic!("unknown trace {other}"),
    }
    out
}

/// YCSB workload D, "read latest" (Cooper et al., "Benchmarking Cloud Serving Systems with
/// YCSB", SoCC 2010; `workloads/workloadd` and `CoreWorkload` with
/// `requestdistribution=latest`, `readproportion=0.95`, `insertproportion=0.05`), with
/// `recordcount` = 1,000,000 and the default zipfian constant 0.99.
///
/// As in YCSB: records `0..recordcount` exist at the start (loaded into the database, not the
/// cache); the insert key sequence is a counter starting at `recordcount`; an op is a read
/// with probability 0.95, else an insert of the next key. A read picks
/// `latest − zipfian.nextLong(latest)`, where `latest` is the newest inserted record
/// (`SkewedLatestGenerator` over the acknowledged insert counter) and `zipfian` is YCSB's
/// `ZipfianGenerator` (Gray et al.'s approximation, SIGMOD 1994, zeta extended incrementally
/// as records are added). Record numbers are scrambled into key ids, as YCSB hashes them
/// (`insertorder=hashed`).
fn ycsb_d(rng: &mut Rng, n: usize, out: &mut Vec<Req>) {
    let recordcount = KEYS as u64;
    // AcknowledgedCounterGenerator(recordcount): lastValue() = recordcount − 1 at the start.
    let mut latest = recordcount - 1;
    let mut zipf = YcsbZipfian::new(latest, 0.99);
    for _ in 0..n {
        if rng.unit() < 0.95 {
            let keynum = latest - zipf.next_long(latest, rng);
            out.push(Req::Read(scramble(keynum, 3)));
        } else {
            latest += 1; // nextValue() then acknowledge(): single-threaded, so at once
            out.push(Req::Write(scramble(latest, 3)));
        }
    }
}

/// YCSB's `ZipfianGenerator` (items `0..items`, rank 0 the most popular), transcribed
/// including its quirk: `eta` keeps using the constructor's item count when the item count
/// grows.
struct YcsbZipfian {
    items: u64,
    theta: f64,
    zeta2theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
    countforzeta: u64,
}

impl YcsbZipfian {
    fn zeta(st: u64, n: u64, theta: f64, initial: f64) -> f64 {
        (st..n).fold(initial, |s, i| s + 1.0 / ((i + 1) as f64).powf(theta))
    }
    fn new(items: u64, theta: f64) -> YcsbZipfian {
        let zetan = Self::zeta(0, items, theta, 0.0);
        let zeta2theta = Self::zeta(0, 2, theta, 0.0);
        YcsbZipfian {
            items,
            theta,
            zeta2theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta: (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta2theta / zetan),
            countforzeta: items,
        }
    }
    fn next_long(&mut self, itemcount: u64, rng: &mut Rng) -> u64 {
        if itemcount > self.countforzeta {
            self.zetan = Self::zeta(self.countforzeta, itemcount, self.theta, self.zetan);
            self.countforzeta = itemcount;
            self.eta = (1.0 - (2.0 / self.items as f64).powf(1.0 - self.theta))
                / (1.0 - self.zeta2theta / self.zetan);
        }
        let u = rng.unit();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let r = (itemcount as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        // YCSB's CoreWorkload redraws a key newer than the newest record; with u < 1 the
        // formula stays below `itemcount`, the clamp only guards rounding.
        r.min(itemcount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ycsb_latest_favours_the_newest() {
        let mut rng = Rng(SEED);
        let mut out = Vec::new();
        ycsb_d(&mut rng, 200_000, &mut out);
        let writes = out.iter().filter(|r| matches!(r, Req::Write(_))).count();
        assert!((9_000..11_000).contains(&writes), "{writes}");
        // The newest record is the most read one (about 1/zeta(1M, 0.99) ≈ 7 % of reads).
        let mut latest = KEYS as u64 - 1;
        let mut newest_reads = 0;
        let mut reads = 0;
        for r in &out {
            match *r {
                Req::Write(_) => latest += 1,
                Req::Read(k) => {
                    reads += 1;
                    newest_reads += usize::from(k == scramble(latest, 3));
                }
            }
        }
        let share = newest_reads as f64 / reads as f64;
        assert!((0.05..0.09).contains(&share), "{share}");
    }
}
