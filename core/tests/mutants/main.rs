//! Tests written to kill mutants that `cargo mutants` found surviving in karlton-core (see
//! `docs/mutation.md`): each one pins a behaviour the rest of the suite left open. One module
//! per core file; each test is named after the behaviour it pins, not after the mutant.

mod coordinator;
mod entry;
mod evict;
mod flow;
mod jcs;
mod json;
mod memory;
mod policy;
mod redis;
mod store;
