//! Benchmarks of slosh: criterion benchmarks of the core under `benches/`,
//! [`load`], the HTTP load generator behind the `slosh-load` binary, and
//! [`soak`], the churn-and-leak run behind `slosh-soak`.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod load;
pub mod soak;
