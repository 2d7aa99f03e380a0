//! Survivors of `core/src/store.rs`.

use karlton_core::flow::{bump_op, get_op, invalidate_op};
use karlton_core::{InvalidateMode, StoreOp};

/// `StoreOp::key` is the entry key an op touches, or the counter key of a bump (Cluster
/// routing uses it).
#[test]
fn store_op_key_is_the_key_it_touches() {
    assert_eq!(get_op("n:k", &["g:n".into()]).key(), "n:k");
    assert_eq!(invalidate_op("n:i", InvalidateMode::Delete).key(), "n:i");
    assert_eq!(bump_op("g:n", 5).key(), "g:n");
    let release = StoreOp::Release {
        key: "n:r".into(),
        token: 3,
    };
    assert_eq!(release.key(), "n:r");
}

/// Byte strings in the wire form read in either case (tests/vectors/README.md).
#[test]
fn hex_decodes_upper_and_lower_case() {
    use karlton_core::store::hex;
    assert_eq!(hex::decode("ABcdEF09"), Some(vec![0xab, 0xcd, 0xef, 0x09]));
    assert_eq!(hex::decode("Ff"), Some(vec![0xff]));
    assert_eq!(hex::decode("f"), None);
    assert_eq!(hex::decode("g0"), None);
}

/// `StoreOp::token_mut` is the token a leased fill, a release or an extend presents (the Redis
/// runners put Redis's token there); reads, authoritative fills, invalidations and bumps have none.
#[test]
fn token_mut_is_the_token_an_op_presents() {
    let mut release = StoreOp::Release { key: "n:r".into(), token: 3 };
    *release.token_mut().unwrap() = 9;
    assert_eq!(release, StoreOp::Release { key: "n:r".into(), token: 9 });
    let mut extend = StoreOp::Extend { key: "n:e".into(), token: 4, lease_ttl_ms: 10 };
    assert_eq!(extend.token_mut().copied(), Some(4));
    assert_eq!(get_op("n:k", &[]).token_mut(), None);
    assert_eq!(invalidate_op("n:i", InvalidateMode::Delete).token_mut(), None);
    assert_eq!(bump_op("g:n", 5).token_mut(), None);
}
