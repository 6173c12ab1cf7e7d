//! The long-loss benchmark: one 10-minute loss cell at 20% loss, hb keepalive 10 ms / deadtime
//! 100 ms (the target: zero false failovers).

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Result;

use super::{
    BenchOptions, Binaries,
    cluster::{Cluster, HbOpts, Kind, Timing},
    data,
    loss::loss_cell,
    report::{header, publish},
};
use crate::bootstrap::step;

pub(super) fn long_loss(root: &Path, bins: &Binaries, opts: &BenchOptions) -> Result<()> {
    let len = if opts.quick {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(600)
    };
    let timing = Timing {
        keepalive: Duration::from_millis(10),
        deadtime: Duration::from_millis(100),
    };
    step(&format!(
        "long loss: hb 10/100 ms at 20% for {} s (target: zero false failovers)",
        len.as_secs()
    ));
    let mut c = Cluster::up(Kind::Hb(HbOpts::DEFAULT), timing, 1, bins)?;
    let r = loss_cell(&mut c, 20, len)?;
    c.down()?;
    let mut body = header(
        opts,
        &format!(
            "hb keepalive 10 ms / deadtime 100 ms, one link, 20% loss on both senders for {} s, \
             counted as in the loss matrix",
            len.as_secs()
        ),
    );
    let _ = write!(
        body,
        "\n| impl | keepalive / deadtime ms | loss | window s | deaths | takeovers | disturbed probes | load |\n\
         |---|---|---|---|---|---|---|---|\n\
         | hb | 10 / 100 | 20% | {} | {} | {} | {} | {:.1} |\n\n\
         Target \"zero false failovers in 10 minutes at 20% loss with deadtime of ten keepalives\": **{}**.\n",
        len.as_secs(),
        r.deaths,
        r.takeovers,
        r.disturbed,
        r.load,
        if r.deaths == 0 && r.takeovers == 0 {
            if len >= Duration::from_secs(600) {
                "met"
            } else {
                "no false failover, but the run was shorter than the 10 minutes the target asks"
            }
        } else {
            "NOT met"
        }
    );
    let (command, machine) = data::provenance(opts);
    let raw = data::LongLossData {
        command,
        machine,
        window_secs: len.as_secs(),
        cell: data::LossCell::of(Kind::Hb(HbOpts::DEFAULT), timing, 20, &r),
    };
    publish(
        root,
        opts,
        "Long run at 20% heartbeat loss",
        &body,
        ("long-loss", &raw),
    )
}
