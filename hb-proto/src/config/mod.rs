//! Heartbeat-compatible configuration: `ha.cf`, `haresources`, `authkeys`.
//!
//! [`model`] holds the typed configuration the rest of hb consumes.

pub mod model;

pub use model::*;
