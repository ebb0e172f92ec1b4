//! Integration tests of the query layer: the engine over real Delta tables and their hot tails.

mod engine;
mod events;
