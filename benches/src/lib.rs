//! Benchmarks of slosh: criterion benchmarks of the core under `benches/`,
//! [`load`], the HTTP load generator behind the `slosh-load` binary, and
//! [`soak`], the churn-and-leak run behind `slosh-soak`, and
//! [`compare`], the slosh-versus-Nchan table behind `slosh-compare` and
//! `benches/compare.sh`.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod compare;
pub mod load;
pub mod soak;
