//! CI's smoke of the fuzz targets: every input kept in `fuzz/corpus/TARGET/` (the minimized
//! corpus, findings included) replayed through the target's body on stable, in a few seconds.
//! The campaign itself is `cargo xtask fuzz`.
#![allow(clippy::unwrap_used)]

use std::{fs, path::PathBuf};

use hb_proto::fuzz;

/// Every fuzz target replayed below.
const TARGETS: [&str; 5] = ["decode", "ha_cf", "haresources", "authkeys", "cluster"];

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, body: fn(&[u8])) {
    let files = corpus(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
    for f in &files {
        let data = fs::read(f).unwrap();
        let r = std::panic::catch_unwind(|| body(&data));
        assert!(r.is_ok(), "{target}: {} fails", f.display());
    }
    println!("{target}: {} inputs replayed", files.len());
}

#[test]
fn decode_corpus() {
    replay("decode", fuzz::decode);
}

#[test]
fn ha_cf_corpus() {
    replay("ha_cf", fuzz::ha_cf);
}

#[test]
fn haresources_corpus() {
    replay("haresources", fuzz::haresources);
}

#[test]
fn authkeys_corpus() {
    replay("authkeys", fuzz::authkeys);
}

#[test]
fn cluster_corpus() {
    replay("cluster", fuzz::cluster);
}

/// Regression test for the cluster target's finding (fuzz/findings/README.md): stale shutdown
/// notices from both nodes' previous generations made both new incarnations start group 0.
#[test]
fn cluster_finding_stale_shutdown_notice() {
    fuzz::cluster(include_bytes!(
        "../../fuzz/findings/cluster/stale-shutdown-notice"
    ));
}

/// Regression test for the cluster target's second finding (fuzz/findings/README.md): a
/// previous incarnation's final heartbeat, arriving just before its shutdown notice, made the
/// peer look alive in the receiver's new run, so the stale notice was acted on.
#[test]
fn cluster_finding_shutdown_notice_after_final_heartbeat() {
    fuzz::cluster(include_bytes!(
        "../../fuzz/findings/cluster/shutdown-notice-after-final-heartbeat"
    ));
}

/// Every target under `fuzz/fuzz_targets/` has a corpus replay here, and the other way round.
#[test]
fn every_target_is_replayed() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    let mut on_disk: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "rs").then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|n| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}
