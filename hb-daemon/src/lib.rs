//! hb's daemon crate: the tokio driver around the sans-IO core in `hb-proto`.
//!
//! This crate is the only place with syscalls: sockets, the XDP ring buffer, netlink, raw ARP,
//! resource scripts and the control socket.

pub mod agents;
pub mod check;
pub mod control;
pub mod daemon;
pub mod display;
pub mod generation_file;
pub mod heartbeat_tools;
pub mod icmp;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod node_name;
pub mod notify;
pub mod pidfile;
pub mod prometheus;
pub mod respawn;
pub mod sender;
pub mod watchdog;
pub mod xdp;
