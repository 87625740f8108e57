//! Benchmarks of slosh: criterion benchmarks of the core under `benches/`,
//! [`load`], the HTTP load generator behind the `slosh-load` binary, and
//! [`soak`], the churn-and-leak run behind `slosh-soak`, and
//! [`compare`], the slosh-versus-Nchan table behind `slosh-compare` and
//! `benches/compare.sh`.
//!
//! # Example
//!
//! Every latency figure the load generator prints comes out of one
//! [`Histogram`](load::histogram::Histogram): fixed memory, quantiles within
//! about 3 %, the maximum exact.
//!
//! ```
//! use benches::load::histogram::Histogram;
//!
//! let mut latency_us = Histogram::new();
//! for us in 1..=1_000 {
//!     latency_us.record(us);
//! }
//! latency_us.record(250_000); // one stall
//! assert_eq!(latency_us.count(), 1_001);
//! assert_eq!(latency_us.max(), 250_000);
//! let p50 = latency_us.quantile(0.5);
//! assert!((485..=515).contains(&p50), "{p50}");
//! assert!(latency_us.quantile(0.99) < 1_100); // the stall is not the p99
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod compare;
pub mod load;
pub mod soak;
