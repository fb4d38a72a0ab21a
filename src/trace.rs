//! One human-readable line per frame for `--trace`.
