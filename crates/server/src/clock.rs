//! The one source of "now". Tests can hold it still or move it, so expiry boundaries are
//! tested exactly instead of with sleeps.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use keyward_core::UnixMillis;

#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Added to the system time; `None` for a plain system clock.
    offset: Option<Arc<AtomicI64>>,
}

impl Clock {
    pub fn system() -> Self {
        Self { offset: None }
    }

    /// A clock that runs with the system but can be shifted with [`Clock::advance`].
    pub fn adjustable() -> Self {
        Self {
            offset: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    pub fn now(&self) -> UnixMillis {
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        system
            + self
                .offset
                .as_ref()
                .map_or(0, |o| o.load(Ordering::Relaxed))
    }

    /// Moves an adjustable clock by `ms` (no effect on the system clock).
    pub fn advance(&self, ms: i64) {
        if let Some(o) = &self.offset {
            o.fetch_add(ms, Ordering::Relaxed);
        }
    }
}
