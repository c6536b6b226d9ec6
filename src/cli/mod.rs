//! The command line's parts (the binary only).

#[cfg(feature = "bench")]
pub mod bench;
pub mod models;
pub mod plot;
pub mod train;
