//! A hostile sender for the heartbeat port (issue 17): random datagrams of a fixed size, paced
//! at a target rate, from a thread inside a network namespace (the lab's client), round-robin
//! over a list of targets. No key, no hb header: junk, as anyone on the segment can send.
//!
//! Used by the privileged flood test (`tests/daemon_flood.rs`) and by `cargo xtask bench --only
//! flood`. It sends only where it is told, from inside the namespace it entered.

use std::{
    net::{SocketAddrV4, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::lab::probe::enter_netns;

/// What to send.
#[derive(Debug, Clone)]
pub struct FloodConfig {
    /// Namespace to send from (by name, e.g. the lab's client).
    pub netns: String,
    /// Where to send, in turn (e.g. both nodes' `eth1` addresses, port 694).
    pub targets: Vec<SocketAddrV4>,
    /// Datagrams per second, over all targets.
    pub rate: u64,
    /// UDP payload bytes of each datagram.
    pub len: usize,
    /// Seed of the payloads' generator (the same seed sends the same bytes).
    pub seed: u64,
    /// Sending threads, each with its own socket and `rate / threads` (on a loaded machine one
    /// thread may not get the CPU time the rate needs).
    pub threads: usize,
}

/// What a flood sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodReport {
    /// Datagrams the kernel accepted for sending.
    pub sent: u64,
    /// Sends that failed (e.g. `ENOBUFS`).
    pub errors: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

impl FloodReport {
    /// Datagrams sent per second.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A running flood; [`Flood::stop`] ends it and says what it sent.
#[derive(Debug)]
pub struct Flood {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<FloodReport>>>,
}

/// Most datagrams sent in one burst before the pacer looks at the clock again.
const BURST: u64 = 256;

/// Random payloads made before sending.
const POOL: usize = 1024;

impl Flood {
    /// Starts sending. Fails when the namespace cannot be entered or no socket opens.
    pub fn start(config: FloodConfig) -> Result<Flood> {
        if config.targets.is_empty() || config.rate == 0 || config.threads == 0 {
            bail!("a flood needs targets, a rate and a thread");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut flood = Flood {
            stop: stop.clone(),
            threads: Vec::new(),
        };
        let n = config.threads as u64;
        for i in 0..n {
            let mut c = config.clone();
            c.rate = config.rate / n + u64::from(i < config.rate % n);
            c.seed = config.seed.wrapping_add(i);
            flood.threads.push(Self::spawn(c, stop.clone())?);
        }
        Ok(flood)
    }

    fn spawn(
        config: FloodConfig,
        stop: Arc<AtomicBool>,
    ) -> Result<JoinHandle<Result<FloodReport>>> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            std::thread::Builder::new().name("lab-flood".into()).spawn(
                move || -> Result<FloodReport> {
                    let setup = (|| -> Result<UdpSocket> {
                        enter_netns(&config.netns)?;
                        UdpSocket::bind("0.0.0.0:0").context("binding the flood's socket")
                    })();
                    let sock = match setup {
                        Ok(s) => {
                            let _ = ready_tx.send(Ok(()));
                            s
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("{e:#}")));
                            return Err(e);
                        }
                    };
                    Ok(run(&sock, &config, &stop))
                },
            )?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(thread),
            Ok(Err(e)) => bail!("flood: {e}"),
            Err(_) => bail!("flood thread died during setup"),
        }
    }

    /// Stops sending and returns what was sent (all threads together; `elapsed` is the longest).
    pub fn stop(mut self) -> Result<FloodReport> {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = FloodReport {
            sent: 0,
            errors: 0,
            elapsed: Duration::ZERO,
        };
        for t in self.threads.drain(..) {
            let r = t.join().map_err(|_| anyhow!("flood thread panicked"))??;
            total.sent += r.sent;
            total.errors += r.errors;
            total.elapsed = total.elapsed.max(r.elapsed);
        }
        Ok(total)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Sends at `config.rate` until `stop`: each round sends what is due by now (at most [`BURST`])
/// in one `sendmmsg(2)` call, then sleeps a little when ahead. One system call per burst keeps
/// the sender's cost per datagram small, so that it can reach the rates the flood is meant to
/// test on a 2-core machine where both receivers share its CPUs.
fn run(sock: &UdpSocket, config: &FloodConfig, stop: &AtomicBool) -> FloodReport {
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, sendmmsg};
    use std::{io::IoSlice, os::fd::AsRawFd};

    let mut sent = 0u64;
    let mut errors = 0u64;
    // A pool of random payloads made up front, each stamped with its pool index in its last
    // bytes (so no two datagrams in a row are equal): the sender's cost per datagram is the
    // send, not the generator (the tests run unoptimised).
    let mut junk = fastrand::Rng::with_seed(config.seed);
    let pool: Vec<Vec<u8>> = (0..POOL)
        .map(|i| {
            let mut b = vec![0u8; config.len];
            junk.fill(&mut b);
            let stamp = (i as u32).to_le_bytes();
            let tail = b.len().saturating_sub(stamp.len());
            for (d, s) in b[tail..].iter_mut().zip(stamp) {
                *d = s;
            }
            b
        })
        .collect();
    let targets: Vec<Option<SockaddrIn>> = config
        .targets
        .iter()
        .map(|t| Some(SockaddrIn::from(*t)))
        .collect();
    let burst = usize::try_from(BURST).unwrap_or(256);
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(burst, None);
    let fd = sock.as_raw_fd();
    let mut next = 0usize;
    let start = Instant::now();
    let mut attempted = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * config.rate as f64) as u64;
        if attempted >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let n = usize::try_from((due - attempted).min(BURST)).unwrap_or(burst);
        let slices: Vec<[IoSlice<'_>; 1]> = (0..n)
            .map(|k| [IoSlice::new(&pool[(next + k) % POOL])])
            .collect();
        let addrs: Vec<Option<SockaddrIn>> = (0..n)
            .map(|k| targets[(next + k) % targets.len()])
            .collect();
        match sendmmsg(fd, &mut headers, &slices, &addrs, [], MsgFlags::empty()) {
            Ok(results) => {
                let ok = results.count() as u64;
                sent += ok;
                errors += n as u64 - ok;
            }
            Err(_) => errors += n as u64,
        }
        next = next.wrapping_add(n);
        attempted += n as u64;
    }
    FloodReport {
        sent,
        errors,
        elapsed: start.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_rate() {
        let r = FloodReport {
            sent: 40_000,
            errors: 0,
            elapsed: Duration::from_secs(2),
        };
        assert_eq!(r.rate(), 20_000.0);
    }
}
