//! Integration tests of the projections crate (one test binary).

mod lake;
mod lake_s3;
mod latest;
mod unwritable;
