//! Query layer of Thinglake. For now: ThingsBoard-style paging, text search and sorting of
//! entity lists served from the in-memory read model ([`page`]). The DataFusion SQL layer over
//! the lake tables joins this crate when the lake projections land.

pub mod page;

pub use page::{PageData, PageError, PageLink, SortKey, SortOrder, paginate};
