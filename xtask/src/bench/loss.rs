//! The loss matrix: false failovers (deaths, takeovers, disturbed probes) under random heartbeat
//! loss on both senders, per timing and loss rate, and the shortest deadtime with none; one loss
//! cell is also what the long-loss benchmark runs.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Result;
use hb_tests::lab::Node;

use super::{
    BenchOptions, Binaries, Which,
    cluster::{Cluster, Kind, Timing},
    data,
    report::{header, ka_timing, loadavg, publish},
};
use crate::bootstrap::step;

pub(super) fn loss(root: &Path, bins: &Binaries, opts: &BenchOptions) -> Result<()> {
    let cell = opts.cell();
    let rates = opts.loss_rates();
    let mut rows = String::new();
    let mut curve = String::new();
    let mut notes = String::new();
    let mut raw = Vec::new();
    for kind in opts.kinds(Which::Loss) {
        let timings: Vec<Timing> = match kind {
            Kind::Hb(_) | Kind::Heartbeat => [30, 50, 100, 200, 500]
                .iter()
                .map(|&d| Timing {
                    keepalive: Duration::from_millis(10),
                    deadtime: Duration::from_millis(d),
                })
                .collect(),
            Kind::Keepalived => {
                let adverts = if opts.adverts.is_empty() {
                    vec![10, 20, 50, 100]
                } else {
                    opts.adverts.clone()
                };
                adverts.into_iter().map(ka_timing).collect()
            }
        };
        // Per loss rate: the shortest deadtime with no false failover.
        let mut shortest: Vec<Option<u128>> = vec![None; rates.len()];
        for timing in &timings {
            step(&format!(
                "loss: {} keepalive {} ms deadtime {} ms: rates {rates:?}, {} s per cell",
                kind.label(),
                timing.keepalive.as_millis(),
                timing.deadtime.as_millis(),
                cell.as_secs()
            ));
            let mut c = Cluster::up(kind, *timing, 1, bins)?;
            for (ri, &rate) in rates.iter().enumerate() {
                let r = match loss_cell(&mut c, rate, cell) {
                    Ok(r) => r,
                    Err(e) => {
                        // The cluster did not come back to n1: the rest of this timing's
                        // cells cannot start from a settled state.
                        crate::interrupt::check()?;
                        let _ = writeln!(
                            notes,
                            "- {} {}/{} ms at {rate}%: cell aborted, later cells of this timing \
                             not run: {}",
                            kind.label(),
                            timing.keepalive.as_millis(),
                            timing.deadtime.as_millis(),
                            format!("{e:#}").lines().next().unwrap_or_default()
                        );
                        break;
                    }
                };
                println!(
                    "  {} {}/{} ms at {rate}%: {} deaths, {} takeovers, {} disturbed probes (load {:.1})",
                    kind.label(),
                    timing.keepalive.as_millis(),
                    timing.deadtime.as_millis(),
                    r.deaths,
                    r.takeovers,
                    r.disturbed,
                    r.load
                );
                raw.push(data::LossCell::of(kind, *timing, rate, &r));
                if r.deaths == 0 && r.takeovers == 0 && shortest[ri].is_none() {
                    shortest[ri] = Some(timing.deadtime.as_millis());
                }
                let _ = writeln!(
                    rows,
                    "| {} | {} / {} | {rate}% | {} | {} | {} | {:.1} |",
                    kind.label(),
                    timing.keepalive.as_millis(),
                    timing.deadtime.as_millis(),
                    r.deaths,
                    r.takeovers,
                    r.disturbed,
                    r.load
                );
            }
            c.down()?;
        }
        for (ri, rate) in rates.iter().enumerate() {
            let _ = writeln!(
                curve,
                "| {} | {rate}% | {} |",
                kind.label(),
                shortest[ri]
                    .map(|d| format!("{d} ms"))
                    .unwrap_or_else(|| "none of those tried".into())
            );
        }
    }
    let mut body = header(
        opts,
        &format!(
            "{} s per cell; two nodes with ONE link (`eth1`) and a client",
            cell.as_secs()
        ),
    );
    body += "\nMethod: random loss of each heartbeat on its sender, both nodes \
        (`iptables -A OUTPUT -p udp --dport 694 -m statistic --mode random --probability P -j DROP` \
        for hb, `-p 112` (VRRP) for keepalived), for the cell's length; the cells of one timing run \
        one after the other in the same cluster. One link so that the loss rate is the loss the \
        implementation sees (with hb's two-link lab topology a heartbeat is lost only when both \
        copies are). **Deaths** = `node X: is dead` lines on either node (keepalived: `Entering \
        MASTER STATE`); **takeovers** = n2 acquiring the resource group (keepalived: n2 becoming \
        master); **disturbed** = client probes in the cell that n1 did not serve. keepalived's \
        deadtime column is its master-down interval, 3 x advert + skew.\n\n\
        | impl | keepalive / deadtime ms | loss | deaths | takeovers | disturbed probes | load |\n\
        |---|---|---|---|---|---|---|\n";
    body += &rows;
    body += "\nShortest deadtime (of those tried) with zero deaths and zero takeovers, per loss rate:\n\n\
        | impl | loss | shortest deadtime with no false failover |\n|---|---|---|\n";
    body += &curve;
    if !notes.is_empty() {
        body += "\nCells that could not be measured:\n";
        body += &notes;
    }
    let (command, machine) = data::provenance(opts);
    let raw = data::LossData {
        command,
        machine,
        cell_secs: cell.as_secs(),
        cells: raw,
    };
    publish(
        root,
        opts,
        "False failovers under heartbeat loss",
        &body,
        ("loss", &raw),
    )
}

/// What one loss cell saw.
#[derive(Debug)]
pub(super) struct CellResult {
    pub(super) deaths: usize,
    pub(super) takeovers: usize,
    pub(super) disturbed: usize,
    pub(super) load: f64,
}

pub(super) fn loss_cell(c: &mut Cluster, rate: u32, cell: Duration) -> Result<CellResult> {
    let initdead = c.lab.spec().initdead;
    c.wait_served(Node::N1, 0, initdead + Duration::from_secs(30))?;
    // Start from a settled cluster: n1 serving for a while.
    let ready = hb_tests::monotonic_ns();
    c.wait_served(Node::N1, ready, Duration::from_secs(30))?;
    crate::interrupt::sleep(Duration::from_millis(500))?;
    let p = f64::from(rate) / 100.0;
    let from = hb_tests::monotonic_ns();
    if rate > 0 {
        c.set_loss(p, true)?;
    }
    let res = crate::interrupt::sleep(cell);
    if rate > 0 {
        c.set_loss(p, false)?;
    }
    res?;
    let to = hb_tests::monotonic_ns();
    let load = loadavg();
    // Events caused by loss at the end of the cell show up within a deadtime.
    crate::interrupt::sleep(c.timing.deadtime * 2)?;
    let (deaths, takeovers) = c.spurious(from, to + (c.timing.deadtime * 2).as_nanos() as u64)?;
    let disturbed = c.disturbed(Node::N1, from, to);
    // After a false failover, wait for n1 to serve again before the next cell, from a client
    // that asks again where the VIP is: the cell's figures are taken, and a stale ARP entry
    // (keepalived's master sends no gratuitous ARP when a backup's takeover was brief) would
    // only delay the next cell by up to a minute (seen once: n1 not reached in 30.5 s).
    if takeovers > 0 {
        c.lab.forget_vip_neighbour()?;
        let back = hb_tests::monotonic_ns();
        c.wait_served(Node::N1, back, initdead + Duration::from_secs(30))?;
    }
    Ok(CellResult {
        deaths,
        takeovers,
        disturbed,
        load,
    })
}
