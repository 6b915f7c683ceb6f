//! A call in flight at the door, from the moment it is sent to its pool until its final
//! reply has gone out (or its client has gone).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::OwnedSemaphorePermit;

use super::DoorState;
use crate::daemon::pool::{PoolHandle, PoolMsg, ReplyTx};

/// A call in flight at the door: counted while it lasts; if it ends before its final
/// reply (the client went away), its pool is told, which cancels it.
pub struct InFlight {
    pub(super) door: Arc<DoorState>,
    pub(super) principal: String,
    pub(super) pool: PoolHandle,
    pub(super) reply: ReplyTx,
    pub(super) answered: bool,
    /// The principal's slot (`max_in_flight`), freed with the call.
    pub(super) _quota: Option<OwnedSemaphorePermit>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.answered {
            self.pool.send(PoolMsg::CallerGone(self.reply.clone()));
        }
        self.door.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.door.metrics.http_in_flight(&self.principal, -1);
    }
}
