//! Survivors of `core/src/redis.rs`. The Redis adapters' tests (the `redis` crate's conformance
//! runs against real servers, the bindings) are not run by cargo-mutants, so these pin the pure
//! half every adapter relies on: how an op becomes a script call and how a reply becomes a
//! protocol reply.

use karlton_core::redis::{RedisValue, decode_reply, encode_op, script, scripts};
use karlton_core::store::{InvalidateMode, LeaseMode, LeaseOutcome, RejectReason, StoreOp, StoreReply};

fn args(a: &[&str]) -> Vec<Vec<u8>> {
    a.iter().map(|s| s.as_bytes().to_vec()).collect()
}

fn bulk(s: &str) -> RedisValue {
    RedisValue::Bulk(s.as_bytes().to_vec())
}

/// The six scripts, in protocol order, each findable by name, each the prelude followed by its
/// own file, each with the SHA1 of exactly that source (what EVALSHA is sent).
#[test]
fn scripts_are_the_prelude_and_their_own_file_under_their_sha1() {
    let names: Vec<&str> = scripts().iter().map(|s| s.name).collect();
    assert_eq!(names, ["read", "fill", "invalidate", "release", "extend", "bump"]);
    let prelude = include_str!("../../src/redis/prelude.lua");
    for (s, own) in scripts().iter().zip([
        include_str!("../../src/redis/read.lua"),
        include_str!("../../src/redis/fill.lua"),
        include_str!("../../src/redis/invalidate.lua"),
        include_str!("../../src/redis/release.lua"),
        include_str!("../../src/redis/extend.lua"),
        include_str!("../../src/redis/bump.lua"),
    ]) {
        assert_eq!(s.source, format!("{prelude}{own}"), "{}", s.name);
        assert_eq!(s.sha1(), sha1_smol::Sha1::from(s.source).digest().to_string(), "{}", s.name);
        assert!(std::ptr::eq(script(s.name).unwrap(), s));
    }
}

/// Every op becomes its script with the entry key first, its counters after it, and ARGV in the
/// order the script reads it (an absent version, generations or token is an empty string).
#[test]
fn encode_op_gives_each_op_its_script_keys_and_argv() {
    let gk = vec!["g:1".to_string(), "g:2".to_string()];
    let read = |lease| StoreOp::Read { key: "k".into(), gen_keys: vec![], lease, lease_ttl_ms: 7 };
    for (mode, arg) in [(LeaseMode::None, "0"), (LeaseMode::IfNeeded, "1"), (LeaseMode::Force, "2")] {
        let c = encode_op(&read(mode));
        assert_eq!((c.script.name, c.keys, c.args), ("read", vec!["k".to_string()], args(&[arg, "7"])));
    }
    let fill = StoreOp::Fill {
        key: "k".into(),
        entry: b"ENT".to_vec().into(),
        soft_at: 10,
        hard_at: 20,
        expire_at: 30,
        version: Some(4),
        generations: Some(vec![5, 6]),
        gen_keys: gk.clone(),
        token: Some(9),
    };
    let c = encode_op(&fill);
    assert_eq!(c.script.name, "fill");
    assert_eq!(c.keys, ["k", "g:1", "g:2"]);
    assert_eq!(c.args, args(&["ENT", "10", "20", "30", "4", "1", "5,6", "9"]));
    let authoritative = StoreOp::Fill {
        key: "k".into(),
        entry: b"E".to_vec().into(),
        soft_at: 1,
        hard_at: 2,
        expire_at: 3,
        version: None,
        generations: None,
        gen_keys: vec![],
        token: None,
    };
    assert_eq!(encode_op(&authoritative).args, args(&["E", "1", "2", "3", "", "0", "", ""]));
    for (mode, arg) in [(InvalidateMode::Delete, "0"), (InvalidateMode::MarkStale, "1")] {
        let c = encode_op(&StoreOp::Invalidate { key: "k".into(), mode });
        assert_eq!((c.script.name, c.keys, c.args), ("invalidate", vec!["k".to_string()], args(&[arg])));
    }
    let c = encode_op(&StoreOp::Release { key: "k".into(), token: 12 });
    assert_eq!((c.script.name, c.keys, c.args), ("release", vec!["k".to_string()], args(&["12"])));
    let c = encode_op(&StoreOp::Extend { key: "k".into(), token: 12, lease_ttl_ms: 500 });
    assert_eq!((c.script.name, c.keys, c.args), ("extend", vec!["k".to_string()], args(&["12", "500"])));
    // The value to use when the counter already holds `value` never wraps to 0.
    let c = encode_op(&StoreOp::Bump { gen_key: "g".into(), value: u64::MAX });
    assert_eq!((c.script.name, c.keys), ("bump", vec!["g".to_string()]));
    assert_eq!(c.args, args(&[&u64::MAX.to_string(), "1", "3600000"]));
}

/// Replies decode to the protocol reply of their op, whichever RESP shape a client hands over
/// for a number (integer, bulk or status string); any other code or shape is a store failure
/// that names the op.
#[test]
fn decode_reply_reads_every_op_s_codes_and_refuses_the_rest() {
    use RedisValue::*;
    let fill = StoreOp::Fill {
        key: "k".into(),
        entry: b"E".to_vec().into(),
        soft_at: 1,
        hard_at: 2,
        expire_at: 3,
        version: None,
        generations: None,
        gen_keys: vec![],
        token: Some(1),
    };
    let codes = [
        StoreReply::Stored,
        StoreReply::Rejected { reason: RejectReason::LeaseLost },
        StoreReply::Rejected { reason: RejectReason::VersionNewer },
        StoreReply::Rejected { reason: RejectReason::GenerationChanged },
    ];
    for (n, want) in codes.iter().enumerate() {
        assert_eq!(decode_reply(&fill, Int(n as i64)).as_ref(), Ok(want));
        assert_eq!(decode_reply(&fill, bulk(&n.to_string())).as_ref(), Ok(want));
        assert_eq!(decode_reply(&fill, Status(n.to_string())).as_ref(), Ok(want));
    }
    for bad in [Int(4), Int(-1), Nil, bulk("x"), Array(vec![])] {
        let e = decode_reply(&fill, bad).unwrap_err();
        assert!(e.message.starts_with("redis fill: unexpected reply (fill code): "), "{}", e.message);
    }
    let inv = StoreOp::Invalidate { key: "k".into(), mode: InvalidateMode::Delete };
    assert_eq!(decode_reply(&inv, Int(0)), Ok(StoreReply::Invalidated { existed: false }));
    assert_eq!(decode_reply(&inv, Int(1)), Ok(StoreReply::Invalidated { existed: true }));
    for op in [StoreOp::Release { key: "k".into(), token: 1 }, StoreOp::Extend { key: "k".into(), token: 1, lease_ttl_ms: 5 }] {
        assert_eq!(decode_reply(&op, Int(0)), Ok(StoreReply::Lease { ok: false }));
        assert_eq!(decode_reply(&op, Int(1)), Ok(StoreReply::Lease { ok: true }));
        assert!(decode_reply(&op, Int(2)).is_err());
    }
    let bump = StoreOp::Bump { gen_key: "g".into(), value: 5 };
    assert_eq!(decode_reply(&bump, Int(6)), Ok(StoreReply::Bumped { generation: 6 }));
    assert!(decode_reply(&bump, Nil).is_err());
    let e = decode_reply(&bump, Error("ERR boom".into())).unwrap_err();
    assert_eq!(e.message, "redis bump: ERR boom");
}

/// A read reply: `[now, entry, marked, generations, lease kind, token or until]`, numbers in any
/// RESP shape, the entry as a bulk or status string, no generations as an empty array or nil.
#[test]
fn decode_reply_reads_a_read_reply_in_every_shape_a_client_gives() {
    use RedisValue::*;
    let read = |n: usize| StoreOp::Read {
        key: "k".into(),
        gen_keys: (0..n).map(|i| format!("g{i}")).collect(),
        lease: LeaseMode::IfNeeded,
        lease_ttl_ms: 5,
    };
    let reply = Array(vec![bulk("1000"), Status("E".into()), Status("1".into()), Nil, Int(2), Int(1500)]);
    let StoreReply::Read(r) = decode_reply(&read(0), reply).unwrap() else { panic!() };
    assert_eq!(r.now_ms, 1000);
    assert_eq!(r.entry.as_deref(), Some(&b"E"[..]));
    assert!(r.marked_stale);
    assert!(r.generations.is_empty());
    assert_eq!(r.lease, LeaseOutcome::Held { until_ms: 1500 });
    let ok = |now: RedisValue, entry: RedisValue, marked: RedisValue, gens: RedisValue| {
        Array(vec![now, entry, marked, gens, Int(0), Int(0)])
    };
    let good = ok(Int(1), Nil, Int(0), Array(vec![Int(3)]));
    let StoreReply::Read(r) = decode_reply(&read(1), good).unwrap() else { panic!() };
    assert_eq!((r.entry, r.marked_stale, r.generations), (None, false, vec![3]));
    for (bad, what) in [
        (ok(Nil, Nil, Int(0), Nil), "now"),
        (ok(Int(1), Int(5), Int(0), Nil), "entry"),
        (ok(Int(1), Nil, Int(2), Nil), "marked"),
        (ok(Int(1), Nil, Int(0), Array(vec![Int(3)])), "generations"),
        (ok(Int(1), Nil, Int(0), Int(3)), "generations"),
        (Array(vec![Int(1), Nil, Int(0), Nil, Int(0)]), "expected 6 elements"),
        (Int(1), "not an array"),
    ] {
        let e = decode_reply(&read(0), bad).unwrap_err();
        assert!(e.message.starts_with(&format!("redis read: unexpected reply ({what}): ")), "{}", e.message);
    }
    // Generations must be as many as the gen keys asked for.
    assert!(decode_reply(&read(2), ok(Int(1), Nil, Int(0), Array(vec![Int(3)]))).is_err());
    assert!(decode_reply(&read(1), ok(Int(1), Nil, Int(0), Nil)).is_err());
}

/// A failure quotes the reply it could not read, cut to 200 bytes (at a character boundary)
/// with an ellipsis, so a huge bulk string does not become a huge error message.
#[test]
fn a_failure_quotes_the_reply_cut_at_a_character_boundary() {
    let bump = StoreOp::Bump { gen_key: "g".into(), value: 5 };
    let e = decode_reply(&bump, RedisValue::Array(vec![])).unwrap_err();
    assert_eq!(e.message, "redis bump: unexpected reply (generation): Array([])");
    // `Status("aéé…")`: the Debug text is `Status("a` (9 bytes) then 2-byte characters, so byte
    // 200 falls inside one and the cut steps back to 199.
    let e = decode_reply(&bump, RedisValue::Status(format!("a{}", "é".repeat(300)))).unwrap_err();
    let quoted = e.message.strip_prefix("redis bump: unexpected reply (generation): ").unwrap();
    assert_eq!(quoted, format!("Status(\"a{}…", "é".repeat(95)));
    let e = decode_reply(&bump, RedisValue::Status("x".repeat(300))).unwrap_err();
    let quoted = e.message.strip_prefix("redis bump: unexpected reply (generation): ").unwrap();
    assert_eq!(quoted, format!("Status(\"{}…", "x".repeat(192)));
    let e = decode_reply(&bump, RedisValue::Status("x".repeat(192 - 2))).unwrap_err();
    assert!(e.message.ends_with(&format!("{}\")", "x".repeat(190))), "exactly 200 bytes are not cut");
}

/// CRC16-XMODEM (polynomial 0x1021, initial 0), written independently of `key_slot`: one bit at
/// a time over a 32-bit register.
fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut reg: u32 = 0;
    for &byte in data {
        for bit in (0..8).rev() {
            let top = (reg >> 15) & 1;
            let incoming = u32::from(byte >> bit) & 1;
            reg = (reg << 1) & 0xFFFF;
            if top ^ incoming == 1 {
                reg ^= 0x1021;
            }
        }
    }
    reg as u16
}

/// An empty hash tag (`{}`) is no tag: Redis Cluster hashes the whole key, as `CLUSTER KEYSLOT`
/// does, so the binding routes it to the node Redis expects.
#[test]
fn an_empty_hash_tag_hashes_the_whole_key() {
    use karlton_core::redis::key_slot;
    assert_eq!(crc16_xmodem(b"123456789"), 0x31C3, "the reference CRC");
    for key in [&b"foo{}{bar}"[..], b"{}", b"foo{}", b"{}bar", b"a{b", b"plain"] {
        assert_eq!(key_slot(key), crc16_xmodem(key) & 0x3FFF, "{}", String::from_utf8_lossy(key));
    }
    assert_eq!(key_slot(b"x{tag}y"), crc16_xmodem(b"tag") & 0x3FFF);
}

/// A record is read by the scripts' rules: numbers of up to 16 digits (every time and token is
/// below 2^53, itself 16 digits) parse; a version floor or lease stamps that are not digits make
/// the whole record garbage.
#[test]
fn records_take_16_digit_numbers_and_refuse_non_digit_fields() {
    use karlton_core::redis::{MAX_TOKEN, parse_record};
    let raw = format!("k1|e|{MAX_TOKEN}|{MAX_TOKEN}|{MAX_TOKEN}|{MAX_TOKEN}|5:1|5:1|{MAX_TOKEN}|{MAX_TOKEN}|ENTRY");
    let r = parse_record(raw.as_bytes()).expect("16-digit fields parse");
    assert_eq!((r.expire_at, r.soft_at, r.hard_at), (MAX_TOKEN, Some(MAX_TOKEN), Some(MAX_TOKEN)));
    assert_eq!(r.lease, Some((MAX_TOKEN, MAX_TOKEN, &b"5:1"[..])));
    assert_eq!(r.entry, Some(&b"ENTRY"[..]));
    for bad in [&b"k1|-|1|||7a|||||"[..], b"k1|-|1|||||zz|42|1500|", b"k1|-|1||||||4x|1500|"] {
        assert_eq!(parse_record(bad), None, "{}", String::from_utf8_lossy(bad));
    }
    assert!(parse_record(b"k1|-|1|||||5:1|42|1500|").is_some());
    // A version floor is a u64 in decimal: up to 20 digits.
    let floor = |v: &str| parse_record(format!("k1|-|7|||{v}|||||").as_bytes()).map(|r| r.version_floor.map(<[u8]>::to_vec));
    assert_eq!(floor("18446744073709551615"), Some(Some(b"18446744073709551615".to_vec())));
    assert_eq!(floor("184467440737095516150"), None);
    assert_eq!(floor(""), Some(None));
}

/// The replies to the fast read (`TIME`, `MGET key counters…`) for a record stamped `stamped`,
/// holding a fresh entry (soft_at 2 000), read at 1 500 ms with the counters reading `current`.
fn fast_replies(stamped: &str, current: &[&str], as_status: bool) -> Vec<RedisValue> {
    use karlton_core::entry::Entry;
    let s = |t: &str| if as_status { RedisValue::Status(t.into()) } else { bulk(t) };
    let e = Entry { value: b"42".to_vec(), soft_at: 2_000, hard_at: 3_000, ..Default::default() }.encode();
    let mut record = format!("k1|e|9999|2000|3000||{stamped}||||").into_bytes();
    record.extend_from_slice(&e);
    // The record holds binary entry bytes: always a bulk string.
    let mut vals = vec![RedisValue::Bulk(record)];
    vals.extend(current.iter().map(|c| s(c)));
    vec![RedisValue::Array(vec![s("1"), s("500123")]), RedisValue::Array(vals)]
}

/// The fast read takes the clock and the counters as status strings as well as bulk strings, and matches a counter only when it is one the scripts can read (`<value>:<epoch>` or a
/// plain decimal, up to 16 digits each); any other counter text goes to the flow, even if the
/// record was stamped with the very same text.
#[test]
fn the_fast_read_matches_only_counters_the_scripts_can_read() {
    use karlton_core::redis::fast_read_hit;
    let p = karlton_core::Policy::default();
    let hit = |stamped: &str, current: &[&str], status: bool| fast_read_hit(&fast_replies(stamped, current, status), &p, 0);
    assert_eq!(&*hit("5:77", &["5:77"], false).expect("a clean hit").value, b"42");
    assert_eq!(&*hit("5:77", &["5:77"], true).expect("status strings too").value, b"42");
    assert!(hit("1234567890123456:1,7", &["1234567890123456:1", "7"], false).is_some());
    for bad in ["5:", ":5", "12345678901234567:1", "12345678901234567", "5::1"] {
        assert!(hit(bad, &[bad], false).is_none(), "{bad:?} is not a counter the scripts read");
    }
}
