//! Benchmarks of slosh: criterion benchmarks of the core under `benches/`,
//! and (with the performance issue) the HTTP load generator.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
