//! hb's sans-IO core.
//!
//! Nothing in this crate opens a socket, spawns a task or reads a clock: time comes in as a
//! [`Timestamp`] (nanoseconds of CLOCK_MONOTONIC, the clock `bpf_ktime_get_ns` reads), bytes
//! come in already received, and decisions come out as values for the driver to carry out.
//!
//! - [`config`]: the Heartbeat configuration model (`ha.cf`, `haresources`, `authkeys`) and
//!   its parsers.
//! - [`message`]: the typed message the codec and the node exchange, and echo arithmetic.
//! - [`packet`]: the wire codec (`Message` <-> bytes); layout in `docs/protocol.md`.
//! - [`replay`]: the replay rule (generation, per-link sequence numbers) for every message.
//! - [`generation`]: the rule giving each start of the daemon a higher generation.
//! - [`auth`]: the `authkeys` digest (HMAC-SHA256/SHA1/MD5 or CRC32) in every message.
//! - [`arbiter`]: the arbiter gate (a group starts only under an etcd lease on its key).
//! - [`fence`]: the fencing gate (no takeover from a silent peer until it is fenced).
//! - [`node`]: the node state machine: membership, failure detection, resource-group
//!   ownership.
//! - `sim` (feature `sim`): a deterministic simulation of a cluster of nodes in virtual time,
//!   for tests and the fuzz targets.
//! - `fuzz` (feature `fuzz`): the bodies of the cargo-fuzz targets under `fuzz/`.

pub mod arbiter;
pub mod auth;
pub mod config;
pub mod fence;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod generation;
pub mod message;
pub mod node;
pub mod packet;
pub mod ping;
pub mod replay;
#[cfg(feature = "sim")]
pub mod sim;
pub mod time;

pub use time::Timestamp;
