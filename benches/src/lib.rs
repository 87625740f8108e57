//! Benchmarks of slosh: criterion benchmarks of the core under `benches/`,
//! and [`load`], the HTTP load generator behind the `slosh-load` binary.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod load;
