//! Hit ratio of karlton's memory store (adaptive W-TinyLFU) against moka 0.12 (TinyLFU, the
//! Rust cache modelled on Caffeine) and plain LRU, on the same seeded traces, in one run.
//!
//! ```text
//! ./scripts/hit-ratio.sh                 # every trace, capacities 1k/10k/100k, 1.5 M requests
//! ./scripts/hit-ratio.sh --quick         # 200 k requests per trace
//! ./scripts/hit-ratio.sh --requests 500000 --capacities 1000,10000 --trace zipf-0.99
//! ```
//!
//! karlton is driven as its Cache drives the store: `peek_valid` (the fresh-hit fast path), and
//! on a miss `read` with a lease then `fill` with that token. moka is used as a user would:
//! `get`, then `insert` on a miss; `moka-synced` also runs `run_pending_tasks()` after each
//! insert (its buffers drained: its best case). See README.md for the traces.

mod caches;
mod traces;

use caches::{Karlton, Lru, Moka, Sim};
use std::time::Instant;
use traces::{Req, TRACES, ZipfCache};

const USAGE: &str = "usage: karlton-hit-ratio [--requests N | --quick] [--capacities 1000,10000,...] [--trace NAME] [--no-synced]
  --requests N        requests per trace (default 1500000)
  --quick             200000 requests per trace
  --capacities LIST   comma-separated entry bounds (default 1000,10000,100000)
  --trace NAME        run one trace: zipf-0.8 zipf-0.99 zipf-1.2 zipf-scan loop-1.2x loop-2x shifting ycsb-d
  --no-synced         skip moka-synced (the slowest column)";

/// Parsed command line.
struct Args {
    requests: usize,
    capacities: Vec<usize>,
    trace: Option<String>,
    synced: bool,
}

fn fail(msg: &str) -> ! {
    eprintln!("karlton-hit-ratio: {msg}\n{USAGE}");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        requests: 1_500_000,
        capacities: vec![1_000, 10_000, 100_000],
        trace: None,
        synced: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--requests" => {
                a.requests = value()
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| fail("--requests: a positive integer"))
            }
            "--quick" => a.requests = 200_000,
            "--capacities" => {
                a.capacities = value()
                    .split(',')
                    .map(|c| {
                        c.trim()
                            .parse()
                            .ok()
                            .filter(|&n| n > 0)
                            .unwrap_or_else(|| fail("--capacities: positive integers"))
                    })
                    .collect()
            }
            "--trace" => {
                let t = value();
                if !TRACES.contains(&t.as_str()) {
                    fail(&format!("unknown trace {t}"));
                }
                a.trace = Some(t);
            }
            "--no-synced" => a.synced = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => fail(&format!("unknown argument {other}")),
        }
    }
    a
}

/// Hit ratio (% of reads) and wall seconds of one cache over one trace.
fn run(sim: &mut dyn Sim, reqs: &[Req]) -> (f64, f64) {
    let t = Instant::now();
    let (mut hits, mut reads) = (0u64, 0u64);
    for r in reqs {
        match *r {
            Req::Read(k) => {
                reads += 1;
                hits += u64::from(sim.read(k));
            }
            Req::Write(k) => sim.write(k),
        }
    }
    (
        100.0 * hits as f64 / reads.max(1) as f64,
        t.elapsed().as_secs_f64(),
    )
}

/// One trace × capacity result.
struct Row {
    trace: &'static str,
    cap: usize,
    /// karlton, moka, moka-synced (NaN if skipped), lru: hit ratio %.
    ratio: [f64; 4],
    /// The same order: wall seconds.
    secs: [f64; 4],
    anomalies: u64,
}

fn main() {
    let args = parse_args();
    let started = Instant::now();
    let n = args.requests;
    println!(
        "# hit ratio, {n} requests per trace (% of reads; ycsb-d inserts are writes, not counted), trace seed {:#x}, karlton seed {}",
        traces::SEED,
        caches::KARLTON_SEED
    );
    let shards: Vec<String> = args
        .capacities
        .iter()
        .map(|&c| format!("{c} → {}", caches::config(c).effective_shards()))
        .collect();
    println!("karlton shards per capacity: {}\n", shards.join(", "));
    println!(
        "| trace | capacity | karlton | moka | moka-synced | lru | karlton − moka | karlton − moka-synced |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut zipfs = ZipfCache::default();
    let mut rows = Vec::new();
    for &name in TRACES
        .iter()
        .filter(|t| args.trace.as_deref().is_none_or(|o| o == **t))
    {
        let mut shared = None;
        for &cap in &args.capacities {
            let generated;
            let reqs: &[Req] = if traces::depends_on_capacity(name) {
                generated = traces::trace(name, cap, n, &mut zipfs);
                &generated
            } else {
                shared.get_or_insert_with(|| traces::trace(name, cap, n, &mut zipfs))
            };
            let mut karlton = Karlton::new(cap);
            let (k, tk) = run(&mut karlton, reqs);
            let (m, tm) = run(&mut Moka::new(cap, false), reqs);
            let (ms, tms) = if args.synced {
                run(&mut Moka::new(cap, true), reqs)
            } else {
                (f64::NAN, f64::NAN)
            };
            let (l, tl) = run(&mut Lru::new(cap), reqs);
            println!(
                "| {name} | {cap} | {k:.2} % | {m:.2} % | {ms:.2} % | {l:.2} % | {:+.2} | {:+.2} |",
                k - m,
                k - ms
            );
            rows.push(Row {
                trace: name,
                cap,
                ratio: [k, m, ms, l],
                secs: [tk, tm, tms, tl],
                anomalies: karlton.anomalies(),
            });
        }
    }

    println!(
        "\nwall time per cache, seconds (secondary: the machine may be shared; includes formatting each key)\n"
    );
    println!("| trace | capacity | karlton | moka | moka-synced | lru |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        let [a, b, c, d] = r.secs;
        println!(
            "| {} | {} | {a:.2} | {b:.2} | {c:.2} | {d:.2} |",
            r.trace, r.cap
        );
    }
    for r in rows.iter().filter(|r| r.anomalies > 0) {
        println!(
            "note: karlton {}/{}: {} leases not granted or fills refused",
            r.trace, r.cap, r.anomalies
        );
    }
    println!(
        "\ntotal wall time: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    match rows
        .iter()
        .min_by(|a, b| (a.ratio[0] - a.ratio[1]).total_cmp(&(b.ratio[0] - b.ratio[1])))
    {
        Some(w) => println!(
            "worst karlton−moka: {:+.2} points ({}, {})",
            w.ratio[0] - w.ratio[1],
            w.trace,
            w.cap
        ),
        None => println!("worst karlton−moka: no rows"),
    }
}
