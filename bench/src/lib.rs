//! execgate's benchmarks live in `benches/`; this crate has no code of its own. It is a
//! workspace member of its own so that criterion (and later the side-by-side exec
//! benchmarks against other supervisors) stays out of the product crates' dependencies.
