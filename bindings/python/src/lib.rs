//! karlton-python (being written)
