//! karlton-node (being written)
