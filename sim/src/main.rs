//! `karlton-sim`: run the fleet simulator.
//!
//! ```text
//! karlton-sim --ci                         # the CI seed set (+ regressions): exit 1 on a violation
//! karlton-sim --seed 7 [--procs N --keys K --calls C --policy swr|xfetch|strict --broken NAME --faults off]
//! karlton-sim --seeds N [--hours H]        # soak: seeds from --from (default 1) until N seeds or H hours
//! karlton-sim --scale                      # the scale table of docs/simulation.md
//! ```

use karlton_sim::{Broken, Config, Faults, PolicyKind, ci_seeds, explain, regressions, run};
use std::time::Instant;

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn flag(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

fn configure(args: &[String], seed: u64) -> Config {
    let mut c = Config::ci(seed);
    if let Some(v) = arg(args, "--procs") {
        c.procs = v;
    }
    if let Some(v) = arg(args, "--keys") {
        c.keys = v;
        c.tags = c.tags.min(v);
    }
    if let Some(v) = arg(args, "--calls") {
        c.calls = v;
    }
    if let Some(v) = arg(args, "--writers") {
        c.writers = v;
    }
    if let Some(p) = arg::<String>(args, "--policy") {
        c.policy = PolicyKind::parse(&p).unwrap_or_else(|| panic!("unknown policy {p}"));
    }
    if let Some(b) = arg::<String>(args, "--broken") {
        c.broken = Some(Broken::parse(&b).unwrap_or_else(|| panic!("unknown variant {b}")));
    }
    if let Some(v) = arg::<String>(args, "--skip") {
        let names = ["C1", "C2", "C3", "C4", "C5", "J1", "L2", "L3", "T1"];
        c.skip = v
            .split(',')
            .filter_map(|n| names.iter().find(|x| **x == n).copied())
            .collect();
    }
    if let Some(x) = arg::<f64>(args, "--fault-scale") {
        c.faults = c.faults.scaled(x);
    }
    if let Some(v) = arg(args, "--fast-path") {
        c.fast_path = v;
    }
    if arg::<String>(args, "--faults").as_deref() == Some("off") {
        c.faults = Faults::NONE;
    }
    c
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let started = Instant::now();
    if flag(&args, "--scale") {
        let fleets: Vec<usize> = arg::<String>(&args, "--fleets")
            .map(|f| f.split(',').filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_else(|| vec![10, 1_000, 10_000]);
        karlton_sim::scale::print_table(
            &fleets,
            arg(&args, "--keys").unwrap_or(1_000_000),
            arg(&args, "--secs").unwrap_or(10),
            arg(&args, "--rate").unwrap_or(20),
        );
        return;
    }
    if flag(&args, "--ci") {
        let n = arg(&args, "--seeds").unwrap_or(karlton_sim::CI_SEEDS);
        let (mut calls, mut steps, mut failed) = (0u64, 0u64, 0u32);
        let mut set: Vec<(u64, Option<Broken>)> = ci_seeds(n).map(|s| (s, None)).collect();
        set.extend(regressions());
        for (seed, broken) in set {
            let c = Config {
                broken,
                ..configure(&args, seed)
            };
            let out = run(&c);
            calls += out.report.calls;
            steps += out.report.steps;
            if out.violation.is_some() && broken.is_none() {
                failed += 1;
                print!("{}", explain(&c, 60).unwrap_or_default());
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "ci: {n} seeds + regressions, {calls} calls, {steps} steps in {secs:.1} s ({:.0} calls/s)",
            calls as f64 / secs
        );
        if failed > 0 {
            println!("ci: {failed} seeds failed");
            std::process::exit(1);
        }
        if calls < 1_000_000 {
            println!("ci: fewer than 1,000,000 simulated calls");
            std::process::exit(1);
        }
        return;
    }
    if let Some(n) = arg::<u64>(&args, "--seeds") {
        let hours: f64 = arg(&args, "--hours").unwrap_or(f64::INFINITY);
        let from: u64 = arg(&args, "--from").unwrap_or(1);
        let (mut calls, mut failed) = (0u64, 0u32);
        for seed in from..from + n {
            if started.elapsed().as_secs_f64() > hours * 3600.0 {
                break;
            }
            let c = configure(&args, seed);
            let out = run(&c);
            calls += out.report.calls;
            if out.violation.is_some() {
                failed += 1;
                print!("{}", explain(&c, 60).unwrap_or_default());
            }
            if seed % 100 == 0 {
                eprintln!(
                    "seed {seed}: {calls} calls, {failed} failed, {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        println!(
            "soak: {calls} calls, {failed} failed, {:.1} s",
            started.elapsed().as_secs_f64()
        );
        std::process::exit(i32::from(failed > 0));
    }
    let seed = arg(&args, "--seed").unwrap_or(1);
    let c = configure(&args, seed);
    let out = run(&c);
    println!("{:#?}", out.report);
    match explain(&c, arg(&args, "--steps").unwrap_or(60)) {
        Some(s) => {
            print!("{s}");
            std::process::exit(1);
        }
        None => println!("seed {seed}: no violation"),
    }
}
