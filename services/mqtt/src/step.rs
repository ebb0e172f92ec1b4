//! What a handler of a device's or a gateway's publish answers the session loop: the packets to
//! send, whether to close, and which sub-devices to start or stop watching. The session applies
//! the steps in the order the publishes came.

use std::sync::Arc;

use thinglake_domain::device::Device;

use crate::codec::{CloseReason, Outbound};

/// The outcome of one publish (or other deferred work), applied by the session loop in order.
#[derive(Default)]
pub(crate) struct Step {
    pub(crate) packets: Vec<Outbound>,
    pub(crate) close: Option<CloseReason>,
    /// Sub-devices whose shared-attribute updates the gateway now receives.
    pub(crate) watch: Vec<(String, Arc<Device>)>,
    /// Sub-devices no longer watched.
    pub(crate) unwatch: Vec<String>,
}

impl Step {
    pub(crate) fn packets(packets: Vec<Outbound>) -> Self {
        Step { packets, ..Step::default() }
    }

    pub(crate) fn close(reason: CloseReason) -> Self {
        Step { close: Some(reason), ..Step::default() }
    }
}

/// What a publish handler answers besides the acknowledgement.
pub(crate) type Handled = Result<Step, thinglake_platform::Error>;
