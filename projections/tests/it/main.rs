//! Integration tests of the projections crate (one test binary).

mod lake;
