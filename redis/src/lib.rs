//! karlton-redis (being written)
