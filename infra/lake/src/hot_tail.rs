//! The hot tail: rows a projection has read from the log but not yet committed to its table,
//! held as Arrow record batches so that a query can union them with the table and see a point
//! within moments of its publication.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use deltalake_core::arrow::array::RecordBatch;
use deltalake_core::arrow::datatypes::SchemaRef;

/// A shared handle on one table's uncommitted rows. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HotTail {
    schema: SchemaRef,
    state: Arc<RwLock<TailState>>,
}

#[derive(Debug, Default)]
struct TailState {
    batches: VecDeque<(u64, RecordBatch)>,
    /// The highest sequence the rows were trimmed up to (committed by then).
    trimmed: u64,
}

/// The tail's rows at one moment, and up to which sequence rows had left it then: a table
/// version that has committed at least that far, together with these rows, holds every row read.
#[derive(Debug, Clone, Default)]
pub struct TailSnapshot {
    pub rows: Vec<RecordBatch>,
    pub trimmed: u64,
}

impl HotTail {
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema, state: Arc::default() }
    }

    /// The table's schema (the batches' schema).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Adds rows read up to stream sequence `last_seq`.
    pub fn push(&self, last_seq: u64, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.state.write().unwrap_or_else(|p| p.into_inner()).batches.push_back((last_seq, batch));
        }
    }

    /// Drops the rows committed up to sequence `committed`.
    pub fn trim(&self, committed: u64) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        while state.batches.front().is_some_and(|(seq, _)| *seq <= committed) {
            state.batches.pop_front();
        }
        state.trimmed = state.trimmed.max(committed);
    }

    /// The uncommitted rows now, oldest first (sharing their buffers with the tail), and how far
    /// committed rows had been trimmed when they were taken.
    pub fn snapshot(&self) -> TailSnapshot {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        TailSnapshot { rows: state.batches.iter().map(|(_, b)| b.clone()).collect(), trimmed: state.trimmed }
    }

    /// How many rows are waiting for their commit.
    pub fn rows(&self) -> usize {
        self.state.read().unwrap_or_else(|p| p.into_inner()).batches.iter().map(|(_, b)| b.num_rows()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{RowBuilder, dead_letters};

    fn batch(rows: usize) -> RecordBatch {
        let mut b = RowBuilder::new(dead_letters().schema);
        for i in 0..rows {
            b.str(Some("p")).i64(Some(i as i64)).str(Some("s")).str(Some("r")).str(Some("x")).i64(Some(0));
            b.end_row();
        }
        b.finish().expect("valid")
    }

    #[test]
    fn committed_rows_leave_the_tail_and_later_ones_stay() {
        let tail = HotTail::new(dead_letters().schema);
        tail.push(10, batch(2));
        tail.push(20, batch(3));
        tail.push(21, batch(0));
        assert_eq!(tail.rows(), 5);
        tail.trim(10);
        assert_eq!(tail.rows(), 3);
        assert_eq!(tail.snapshot().rows.len(), 1);
        assert_eq!(tail.snapshot().trimmed, 10);
        tail.trim(20);
        assert!(tail.snapshot().rows.is_empty());
        tail.trim(15);
        assert_eq!(tail.snapshot().trimmed, 20, "the mark never goes back");
    }
}
