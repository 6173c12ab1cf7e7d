//! The bodies of the cargo-fuzz targets under `fuzz/` (feature `fuzz`), one function per
//! target taking the fuzzer's bytes, so that the fuzz targets and the stable corpus replay
//! (`tests/fuzz_corpus.rs`) run the same code.
//!
//! Each function panics when it finds a bug (a decoder round trip that does not hold, two
//! owners outside a partition in the simulated cluster) and returns normally otherwise;
//! refusing an input with an error is normal.
#![allow(clippy::expect_used)]

use std::{collections::BTreeMap, path::Path, time::Duration};

use arbitrary::{Arbitrary, Unstructured};

use crate::{
    config::{self, AuthKey, AuthKeys, AuthMethod, AutoFailback},
    node::{Command, Scope},
    packet::{decode as decode_packet, encode, peek_header},
    sim::{LinkParams, Sim, SimSpec},
};

/// `fuzz/fuzz_targets/ha_cf.rs`: the `ha.cf` parser never panics.
pub fn ha_cf(data: &[u8]) {
    let _ = config::parse_ha_cf(Path::new("ha.cf"), data);
}

/// `fuzz/fuzz_targets/haresources.rs`: the `haresources` parser never panics.
pub fn haresources(data: &[u8]) {
    let resolve = |name: &str| Some(std::path::PathBuf::from("/etc/init.d").join(name));
    let _ = config::parse_haresources_with(Path::new("haresources"), data, &resolve, "/etc/init.d");
}

/// `fuzz/fuzz_targets/authkeys.rs`: the `authkeys` parser never panics.
pub fn authkeys(data: &[u8]) {
    let _ = config::parse_authkeys(Path::new("authkeys"), data);
}

fn decode_keys() -> AuthKeys {
    // One key per method; CRC (id 4) lets the fuzzer reach the post-authentication body checks.
    let keys = [
        (1, AuthMethod::Sha256, &b"fuzz sha256"[..]),
        (2, AuthMethod::Sha1, &b"fuzz sha1"[..]),
        (3, AuthMethod::Md5, &b"fuzz md5"[..]),
        (4, AuthMethod::Crc, &b""[..]),
    ]
    .into_iter()
    .map(|(id, method, secret)| {
        (
            id,
            AuthKey {
                id,
                method,
                secret: secret.to_vec(),
            },
        )
    })
    .collect::<BTreeMap<_, _>>();
    AuthKeys { active: 1, keys }
}

/// `fuzz/fuzz_targets/decode.rs`: any byte string decodes to `Ok` or an error, never a panic;
/// whatever decodes has the header `peek_header` reads, and re-encodes (with every key) to
/// bytes that decode to the same message.
pub fn decode(data: &[u8]) {
    let keys = decode_keys();
    let header = peek_header(data);
    match decode_packet(data, &keys) {
        Ok(msg) => {
            let Ok(h) = header else {
                panic!("decode accepted what peek_header refused");
            };
            assert_eq!(
                (h.sender, h.generation, h.seq),
                (msg.sender, msg.generation, msg.seq)
            );
            for key in keys.keys.values() {
                if let Ok(bytes) = encode(&msg, key) {
                    assert_eq!(decode_packet(&bytes, &keys).ok(), Some(msg.clone()));
                }
            }
        }
        Err(e) => {
            let _ = e.reason();
        }
    }
}

/// One of the two nodes.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Who {
    /// node1 (preferred node of group 0).
    Node1,
    /// node2 (preferred node of group 1).
    Node2,
}

impl Who {
    fn index(self) -> usize {
        match self {
            Who::Node1 => 0,
            Who::Node2 => 1,
        }
    }
}

/// A command's scope.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum ScopeArg {
    /// `all`.
    All,
    /// `foreign`.
    Foreign,
    /// `local`.
    Local,
    /// `failback`.
    Failback,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Scope {
        match s {
            ScopeArg::All => Scope::All,
            ScopeArg::Foreign => Scope::Foreign,
            ScopeArg::Local => Scope::Local,
            ScopeArg::Failback => Scope::Failback,
        }
    }
}

/// One step of the `cluster` target: a fault, an operator command, an agent behaviour, a
/// datagram from outside or time passing.
#[derive(Debug, Clone, Arbitrary)]
pub enum Step {
    /// Let `ms` ms of virtual time pass.
    Run(u8),
    /// Let `5 * n` ms pass.
    RunLong(u8),
    /// Power the node off (its resources vanish with it).
    Kill(Who),
    /// Start the node in a new generation (killing it first if it runs: a crash and restart).
    Start(Who),
    /// `hbctl standby SCOPE`.
    Standby(Who, ScopeArg),
    /// `hbctl takeover SCOPE`.
    Takeover(Who, ScopeArg),
    /// Clean stop.
    Shutdown(Who),
    /// Cut every path between the nodes.
    Partition,
    /// End the partition.
    Heal,
    /// Freeze the node (SIGSTOP) for `ms % 3000` ms.
    Pause(Who, u16),
    /// Freeze both nodes for `ms % 3000` ms (the machine or VM host stalls).
    PauseBoth(u16),
    /// Cut (`false`) or restore one link (`0` or `1`).
    Link(bool, bool),
    /// Lose `pct % 101` percent of the datagrams on a link (a disruption while not 0).
    Loss(bool, u8),
    /// Extra delay of up to `ms % 25` ms per datagram on a link (reorders; below deadtime minus
    /// keepalive, so no peer may be declared dead for it).
    Jitter(bool, u8),
    /// Whether the node's start of a group fails.
    FailStart(Who, bool, bool),
    /// How many of the node's next stops of a group fail (`n % 4`).
    FailStop(Who, bool, u8),
    /// How long resource actions take from now on, `ms` ms.
    ResourceDelay(u8),
    /// Replay the `back`-th last datagram sent to the node, on a link.
    Replay(Who, bool, u8),
    /// Send the `back`-th last datagram with byte `at` xored by `x` (`x != 0`).
    Mangle(Who, u8, u16, u8),
    /// Send these bytes to the node.
    Garbage(Who, bool, Vec<u8>),
}

/// Virtual time one input may cover (1000 keepalives: the cost of an input grows with it), and
/// how many steps of it are run.
const MAX_VIRTUAL: Duration = Duration::from_secs(10);
const MAX_STEPS: usize = 256;

fn link(b: bool) -> usize {
    usize::from(b)
}

/// `fuzz/fuzz_targets/cluster.rs`: a simulated two-node cluster (two groups, one preferred by
/// each node, two links, every message encoded, signed and replay-checked as the daemon does) driven by
/// an arbitrary sequence of [`Step`]s. Panics if two nodes are `Starting`/`Held` for one group
/// at any moment outside a partition (partition, pause, every link cut, loss, and a settle
/// time after each), or if the core panics or livelocks.
pub fn cluster(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let failback = if u.arbitrary::<bool>().unwrap_or(true) {
        AutoFailback::On
    } else {
        AutoFailback::Off
    };
    let Ok(steps) = u.arbitrary_take_rest_iter::<Step>() else {
        return;
    };
    let mut spec = SimSpec::new(2, 0);
    spec.failback = failback;
    spec.wire = true;
    let mut sim = Sim::new(spec);
    sim.max_steps = 2_000_000;
    let end = sim.now + MAX_VIRTUAL;
    // Loss windows open per link, so each closes once.
    let mut lossy = [false; 2];
    let mut log: Vec<Step> = Vec::new();
    for step in steps.take(MAX_STEPS) {
        let Ok(step) = step else { break };
        if sim.now >= end {
            break;
        }
        log.push(step.clone());
        apply(&mut sim, &mut lossy, step);
        if let Some(v) = sim.violations.first() {
            panic!("two owners outside a partition: {v:?} after steps {log:?}");
        }
    }
    // Clear every fault, then let the cluster settle: still never two owners.
    for (l, on) in lossy.iter_mut().enumerate() {
        sim.spec.links[l] = LinkParams::CLEAN;
        if std::mem::take(on) {
            sim.undisrupt();
        }
    }
    for l in 0..2 {
        sim.set_link(l, true);
    }
    sim.heal();
    sim.run_for(Duration::from_secs(1));
    if let Some(v) = sim.violations.first() {
        panic!("two owners outside a partition: {v:?} after steps {log:?}");
    }
}

fn apply(sim: &mut Sim, lossy: &mut [bool; 2], step: Step) {
    match step {
        Step::Run(ms) => sim.run_for(Duration::from_millis(u64::from(ms))),
        Step::RunLong(n) => sim.run_for(Duration::from_millis(5 * u64::from(n))),
        Step::Kill(w) => sim.kill(w.index()),
        Step::Start(w) => {
            sim.kill(w.index());
            sim.start(w.index());
        }
        Step::Standby(w, s) => sim.command(w.index(), Command::Standby(s.into())),
        Step::Takeover(w, s) => sim.command(w.index(), Command::Takeover(s.into())),
        Step::Shutdown(w) => sim.command(w.index(), Command::Shutdown),
        Step::Partition => sim.partition(&[&[0], &[1]]),
        Step::Heal => sim.heal(),
        Step::Pause(w, ms) => {
            sim.pause(w.index(), Duration::from_millis(u64::from(ms % 3000)));
        }
        Step::PauseBoth(ms) => {
            let d = Duration::from_millis(u64::from(ms % 3000));
            sim.pause(0, d);
            sim.pause(1, d);
        }
        Step::Link(l, up) => sim.set_link(link(l), up),
        Step::Loss(l, pct) => {
            let l = link(l);
            let p = f64::from(pct % 101) / 100.0;
            sim.spec.links[l].loss = p;
            match (lossy[l], p > 0.0) {
                (false, true) => sim.disrupt(),
                (true, false) => sim.undisrupt(),
                _ => {}
            }
            lossy[l] = p > 0.0;
        }
        Step::Jitter(l, ms) => {
            sim.spec.links[link(l)].jitter = Duration::from_millis(u64::from(ms % 25));
        }
        Step::FailStart(w, g, fail) => sim.hosts[w.index()].fail_start[usize::from(g)] = fail,
        Step::FailStop(w, g, n) => {
            sim.hosts[w.index()].fail_stop[usize::from(g)] = u32::from(n % 4);
        }
        Step::ResourceDelay(ms) => {
            sim.spec.resource_delay = Duration::from_millis(u64::from(ms));
        }
        Step::Replay(w, l, back) => {
            if let Some((_, bytes)) = sim.captured(usize::from(back)) {
                let bytes = bytes.to_vec();
                sim.inject(w.index(), link(l), bytes);
            }
        }
        Step::Mangle(w, back, at, x) => {
            if let Some((l, bytes)) = sim.captured(usize::from(back))
                && !bytes.is_empty()
                && x != 0
            {
                let mut bytes = bytes.to_vec();
                let i = usize::from(at) % bytes.len();
                bytes[i] ^= x;
                sim.inject(w.index(), l, bytes);
            }
        }
        Step::Garbage(w, l, bytes) => sim.inject(w.index(), link(l), bytes),
    }
}
