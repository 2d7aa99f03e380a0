//! `karlton-inspect`: an operator's view of one karlton key on a live Redis.
//!
//! ```text
//! karlton-inspect --url redis://127.0.0.1:6379 show '{user}:42'
//! karlton-inspect --url redis://… show '{user}:42' --gen '{user}:!gen'
//! karlton-inspect --url redis://… invalidate '{user}:42' [--mark-stale]
//! karlton-inspect --url redis://… bump user [--hash-tag]
//! ```

use karlton::Store;
use karlton_core::entry::peek_header;
use karlton_core::{InvalidateMode, StoreOp, StoreReply};
use karlton_redis::RedisStore;

fn usage() -> ! {
    eprintln!(
        "usage: karlton-inspect [--url redis://host:port] (show <key> [--gen <counter key>]… | invalidate <key> [--mark-stale] | bump <namespace> [--hash-tag])"
    );
    std::process::exit(2)
}

fn rel(at: u64, now: u64) -> String {
    let d = at as i64 - now as i64;
    if d >= 0 { format!("{at} (in {:.3} s)", d as f64 / 1e3) } else { format!("{at} ({:.3} s ago)", -d as f64 / 1e3) }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut url = std::env::var("KARLTON_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    if let Some(i) = args.iter().position(|a| a == "--url") {
        if i + 1 >= args.len() {
            usage();
        }
        url = args.remove(i + 1);
        args.remove(i);
    }
    let flag = |args: &mut Vec<String>, f: &str| -> bool {
        if let Some(i) = args.iter().position(|a| a == f) {
            args.remove(i);
            true
        } else {
            false
        }
    };
    let client = redis::Client::open(url.as_str()).unwrap_or_else(|e| {
        eprintln!("bad url: {e}");
        std::process::exit(2)
    });
    let store = RedisStore::from_client(client.clone(), std::time::Duration::from_secs(2)).await.unwrap_or_else(|e| {
        eprintln!("cannot connect to {url}: {e}");
        std::process::exit(1)
    });
    let mut conn = store.connection().clone();
    match args.first().map(String::as_str) {
        Some("show") => {
            let mut gens = Vec::new();
            while let Some(i) = args.iter().position(|a| a == "--gen") {
                if i + 1 >= args.len() {
                    usage();
                }
                gens.push(args.remove(i + 1));
                args.remove(i);
            }
            let Some(key) = args.get(1).cloned() else { usage() };
            let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
            let now = secs * 1000 + micros / 1000;
            let ty: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
            println!("key        {key}");
            println!("server now {now}");
            if ty == "none" {
                println!("absent (a miss)");
            } else if ty != "string" {
                println!("CORRUPT: a {ty}, not a karlton record (reads as a corrupt entry: counted, a miss; the next fill overwrites it)");
            } else {
                let raw: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
                let pttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
                match karlton_core::redis::parse_record(&raw) {
                    None => println!("CORRUPT: a string that is not a karlton record ({} bytes; reads as a corrupt entry)", raw.len()),
                    Some(r) => {
                        match r.entry {
                            Some(e) => {
                                println!("value      {} bytes (encoded entry)", e.len());
                                match peek_header(e) {
                                    Ok(hdr) => println!("entry meta {hdr:?}"),
                                    Err(err) => println!("entry meta CORRUPT ({err}): reads as a miss, counted, refilled"),
                                }
                            }
                            None => println!("value      none (deleted or never filled; version floor / lease only)"),
                        }
                        if let Some(t) = r.soft_at {
                            println!("soft_at    {}  {}", rel(t, now), if now < t { "fresh" } else { "stale" });
                        }
                        if let Some(t) = r.hard_at {
                            println!("hard_at    {}", rel(t, now));
                        }
                        println!("expire_at  {}", rel(r.expire_at, now));
                        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                        println!("version    {}", r.version_floor.map_or_else(|| "none".into(), text));
                        println!("marked     {}", if r.marked { "stale (invalidated with mark-stale)" } else { "no" });
                        println!("generation stamped [{}]", text(r.generations));
                        match r.lease {
                            Some((l, lu, _)) if lu > now => println!("lease      held by token {l} until {}", rel(lu, now)),
                            Some((l, lu, _)) => println!("lease      expired (token {l}, ended {})", rel(lu, now)),
                            None => println!("lease      none"),
                        }
                        println!("PTTL       {pttl} ms");
                    }
                }
            }
            for g in gens {
                let v: Option<String> = redis::cmd("GET").arg(&g).query_async(&mut conn).await.unwrap_or(None);
                println!("counter    {g} = {}", v.unwrap_or_else(|| "0 (never bumped)".into()));
            }
        }
        Some("invalidate") => {
            let mark = flag(&mut args, "--mark-stale");
            let Some(key) = args.get(1).cloned() else { usage() };
            let mode = if mark { InvalidateMode::MarkStale } else { InvalidateMode::Delete };
            match store.execute(StoreOp::Invalidate { key: key.clone(), mode }).await {
                Ok(StoreReply::Invalidated { existed }) => println!("invalidated {key} ({mode:?}); an entry was there: {existed}"),
                other => {
                    eprintln!("failed: {other:?}");
                    std::process::exit(1)
                }
            }
        }
        Some("bump") => {
            let tag = flag(&mut args, "--hash-tag");
            let Some(ns) = args.get(1).cloned() else { usage() };
            let gen_key = karlton_core::key::generation_key(&ns, tag);
            let value = (karlton::now_ms().wrapping_mul(0x9E37_79B9_7F4A_7C15) % (1 << 53)) | 1;
            match store.execute(StoreOp::Bump { gen_key: gen_key.clone(), value }).await {
                Ok(StoreReply::Bumped { generation }) => println!("bumped {gen_key} to {generation}: every entry of {ns} is orphaned"),
                other => {
                    eprintln!("failed: {other:?}");
                    std::process::exit(1)
                }
            }
        }
        _ => usage(),
    }
}
