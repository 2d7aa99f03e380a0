//! The scale mode (docs/simulation.md).

/// Print the scale table.
pub fn print_table(_keys: usize, _calls: u64) {
    println!("not yet");
}
