//! The `slosh-cli` binary.

fn main() {}
