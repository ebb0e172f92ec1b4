//! Integration tests of the query layer: the engine over a real Delta table and a hot tail.

mod engine;
