//! The scale mode: how store load, loader calls and waits grow with the fleet, for karlton and
//! for naive cache-aside (`get`, on a miss load and `set`: no lease, no coalescing), and what an
//! in-process L1 with a 300 ms bound would save (docs/simulation.md has the table).
//!
//! Every process sends `rate` reads per second (virtual time) for `secs` seconds over Zipf(1.0)
//! keys, with the plain 1 s TTL policy (each hot-key expiry is a stampede), 50 writes per second
//! fleet-wide (Zipf keys too), no faults, no memory fast path (the store is remote). The checkers are off: this mode
//! measures.

use crate::{Broken, Config, Faults, PolicyKind, Report, run};

/// One row's configuration.
pub fn config(procs: usize, keys: usize, secs: u64, rate: u64, naive: bool) -> Config {
    let calls = procs as u64 * rate * secs;
    Config {
        seed: 2026,
        procs,
        keys,
        zipf: 1.0,
        calls,
        read_gap_us: (1_000_000 / (procs as u64 * rate)).max(1),
        // Writes do not grow with the fleet: 50 per second in all.
        reads_per_write: (procs as u64 * rate / 50).max(1),
        writers: 8,
        tags: 16,
        policy: PolicyKind::Plain,
        faults: Faults::NONE,
        broken: naive.then_some(Broken::NaiveCacheAside),
        fast_path: 0.0,
        skew_ms: 2_000,
        trace_key: None,
        unchecked: true,
        skip: Vec::new(),
    }
}

/// The call latency under which 99 % of calls answered (ms).
pub fn p99(r: &Report) -> u64 {
    let total: u64 = r.wait_hist.iter().sum();
    let mut acc = 0;
    for (ms, n) in r.wait_hist.iter().enumerate() {
        acc += n;
        if acc * 100 >= total * 99 {
            return ms as u64;
        }
    }
    r.wait_hist.len() as u64
}

/// Print the table (markdown) for these fleet sizes.
pub fn print_table(fleets: &[usize], keys: usize, secs: u64, rate: u64) {
    println!(
        "| processes | mode | calls | loader calls/s | hot-key loader calls/s | store ops/s | store ops/request | peak concurrent loads | p99 wait (ms) | hit rate | L1 (300 ms) would answer | store ops L1 saves | invalidation msgs/write (BCAST) |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &procs in fleets {
        for naive in [false, true] {
            let started = std::time::Instant::now();
            let c = config(procs, keys, secs, rate, naive);
            let out = run(&c);
            let r = &out.report;
            let s = r.sim_ms.max(1) as f64 / 1000.0;
            let hits = r.hits_fresh + r.hits_stale;
            println!(
                "| {procs} | {} | {} | {:.0} | {:.1} | {:.0} | {:.3} | {} | {} | {:.1} % | {:.1} % | {:.1} % | {procs} |",
                if naive {
                    "naive cache-aside"
                } else {
                    "karlton"
                },
                r.calls,
                r.loads as f64 / s,
                r.hot_loads as f64 / s,
                r.store_ops as f64 / s,
                r.read_ops as f64 / r.calls.max(1) as f64,
                r.peak_loads,
                p99(r),
                100.0 * hits as f64 / r.answered.max(1) as f64,
                100.0 * r.l1_hits as f64 / r.answered.max(1) as f64,
                100.0 * r.l1_ops_saved as f64 / r.read_ops.max(1) as f64,
            );
            if let Some(v) = &out.violation {
                println!("<!-- {procs} {naive}: {} {} -->", v.invariant, v.detail);
            }
            eprintln!(
                "{procs} processes, naive={naive}: {:.1} s wall",
                started.elapsed().as_secs_f64()
            );
        }
    }
}
