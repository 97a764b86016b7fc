#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
//! The pure core of keyward.
//!
//! Everything here is plain data and arithmetic: the API key format (generation, parsing,
//! checksum, hashing, display hints), the capability catalog and its subset rules, forward-auth route rules, typed
//! prefixed identifiers, plans, rate-limit arithmetic and human durations. Nothing here does
//! I/O, reads the clock or is async; callers pass the current time in. ([`hint`] asks the
//! processor to fetch memory early, which changes no result.)

pub mod base62;
pub mod capability;
pub mod duration;
pub mod forward;
pub mod hint;
pub mod id;
pub mod key;
pub mod plan;
pub mod ratelimit;
pub mod role;
pub mod status;

pub use capability::{Capability, CapabilityCatalog, CapabilitySet};
pub use duration::HumanDuration;
pub use forward::{ForwardRule, ForwardRules};
pub use id::*;
pub use key::{ApiKey, KeyHash, KeyPrefix, MalformedKey};
pub use plan::{Plan, RateLimit};
pub use role::Role;
pub use status::KeyStatus;

/// Milliseconds since the Unix epoch, UTC. Every stored time is one of these.
pub type UnixMillis = i64;
