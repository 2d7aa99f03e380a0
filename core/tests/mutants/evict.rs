//! Survivors of `core/src/evict.rs` (a 1/3 round-robin sample was run).

use karlton_core::evict::{Region, WTinyLfu};

/// A policy reports the capacity it was made with (at least 1) and starts with a window of 1 %
/// of it (rounded up), the rest being the main region.
#[test]
fn a_new_policy_reports_its_capacity_and_a_one_percent_window() {
    let p = WTinyLfu::new(1_000, 0);
    assert_eq!((p.capacity(), p.window_max()), (1_000, 10));
    let p = WTinyLfu::new(250, 0);
    assert_eq!((p.capacity(), p.window_max()), (250, 3));
    assert_eq!(WTinyLfu::new(0, 0).capacity(), 1);
}

/// `region` says where a tracked id lives: a new id enters the window, and an id the policy
/// dropped or was told to forget is not tracked.
#[test]
fn region_tracks_where_an_id_lives() {
    let mut p = WTinyLfu::new(1_000, 0);
    assert_eq!(p.region(0), None);
    p.insert(0, 11, 1);
    p.insert(1, 22, 1);
    assert_eq!((p.region(0), p.region(1)), (Some(Region::Window), Some(Region::Window)));
    p.remove(0);
    assert_eq!((p.region(0), p.region(1)), (None, Some(Region::Window)));
}

/// An entry heavier than the whole capacity is dropped as oversized (not as a rejected
/// candidate): the memory store's `eviction_counts` reports the two apart.
#[test]
fn an_entry_heavier_than_the_capacity_is_dropped_as_oversized() {
    let mut p = WTinyLfu::new(100, 0);
    p.insert(0, 11, 500);
    let mut out = Vec::new();
    p.evict(None, |_| false, &mut out);
    assert_eq!(out, [(0, karlton_core::evict::Cause::Oversized)]);
    let c = p.counts();
    assert_eq!((c.oversized, c.rejected, c.evicted), (1, 0, 0));
}
