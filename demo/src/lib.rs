//! karlton-demo (being written)
