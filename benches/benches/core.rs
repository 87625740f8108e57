//! Criterion benchmarks of slosh-core.
fn main() {}
