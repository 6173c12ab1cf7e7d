//! Feeds many pseudo-random and mutated byte strings to every parser (deterministic seed) and
//! checks that each one returns normally with well-formed diagnostics: never a panic, every
//! error on a line that exists in the input.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use hb_proto::config::{
    Diagnostic, parse_authkeys, parse_ha_cf, parse_haresources_with, parse_time,
};

/// xorshift64*: small, deterministic, good enough to shuffle bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const HA_CF_WORDS: &[&str] = &[
    "keepalive",
    "deadtime",
    "warntime",
    "initdead",
    "udpport",
    "bcast",
    "ucast",
    "mcast",
    "node",
    "auto_failback",
    "logfile",
    "debugfile",
    "logfacility",
    "debug",
    "ping",
    "ping_group",
    "deadping",
    "respawn",
    "stonith_host",
    "watchdog",
    "realtime",
    "hopfudge",
    "autojoin",
    "xdp",
    "garp_count",
    "garp_interval",
    "metrics_listen",
    "control_socket",
    "control_group",
    "crm",
    "pacemaker",
    "serial",
    "baud",
    "compression",
    "use_logd",
    "nice_failback",
    "hbgenmethod",
    "use_apphbd",
    "apiauth",
    "foo",
    "2",
    "0.05",
    "10ms",
    "1500us",
    "1s",
    ".",
    "1.2.3",
    "99999999999999999999999",
    "on",
    "off",
    "legacy",
    "any",
    "eth0",
    "eth1,eth2",
    "10.0.0.1",
    "239.0.0.1",
    "694",
    "0",
    "1",
    "#",
    "\\",
    ",",
    "a",
    "B",
    "[::1]:9",
    "/x",
    "\u{e9}",
    "-1",
    "\t",
];

const HAR_WORDS: &[&str] = &[
    "node1",
    "10.0.0.1",
    "10.0.0.1/24",
    "10.0.0.1/24/eth0",
    "10.0.0.1/24/eth0/10.0.0.255",
    "10.0.0.1/24/10.0.0.255",
    "2001:db8::1/64",
    "IPaddr::",
    "IPaddr::1.2.3.4/33",
    "IPaddr2::fe80::1/64/eth0",
    "Filesystem::/dev/sda::/mnt::ext4",
    "Filesystem::",
    "Filesystem::a::b::c::d::e",
    "httpd",
    "httpd::a::b",
    "nosuch",
    "::",
    "/",
    "\\",
    "#",
    "..",
    "1.",
    "255.255.255.255",
    "IPaddr::10.0.0.1/255.255.0.0",
];

const AUTH_WORDS: &[&str] = &[
    "auth",
    "1",
    "2",
    "0",
    "255",
    "256",
    "-1",
    "+3",
    "crc",
    "md5",
    "sha1",
    "sha256",
    "key",
    "#",
    "a",
    "x",
    "99999999999999999999",
];

fn random_line(rng: &mut Rng, words: &[&str]) -> String {
    let n = rng.below(6);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push_str(rng.pick(&[" ", "\t", "  ", ","]));
        }
        s.push_str(rng.pick(words));
    }
    s
}

fn random_text(rng: &mut Rng, words: &[&str]) -> Vec<u8> {
    let lines = rng.below(12);
    let mut out = Vec::new();
    for _ in 0..lines {
        out.extend_from_slice(random_line(rng, words).as_bytes());
        out.extend_from_slice(rng.pick(&["\n", "\r\n", " \\\n"]).as_bytes());
    }
    out
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(300);
    (0..len).map(|_| rng.next() as u8).collect()
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..=rng.below(8) {
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            _ => {
                let i = rng.below(v.len() + 1);
                let extra = *[b"\n".as_slice(), b"\\", b"#", b"::", b"/", b"\xff", b"."]
                    .get(rng.below(7))
                    .unwrap_or(&b"\n".as_slice());
                v.splice(i..i, extra.iter().copied());
            }
        }
    }
    v
}

fn check(input: &[u8], diags: &[Diagnostic], path: &Path) {
    let lines = input.split(|b| *b == b'\n').count();
    for d in diags {
        assert_eq!(d.path, path);
        assert!(
            d.line <= lines,
            "line {} beyond {lines} lines: {d} for {input:?}",
            d.line
        );
        assert!(!d.message.is_empty());
    }
}

fn run_all(input: &[u8]) {
    let p = Path::new("ha.cf");
    match parse_ha_cf(p, input) {
        Ok(ok) => check(input, &ok.warnings, p),
        Err(e) => {
            assert!(!e.is_empty());
            check(input, &e, p);
        }
    }
    let p = Path::new("haresources");
    let resolve = |name: &str| {
        name.len()
            .is_multiple_of(2)
            .then(|| PathBuf::from("/s").join(name))
    };
    match parse_haresources_with(p, input, &resolve, "/s") {
        Ok(ok) => check(input, &ok.warnings, p),
        Err(e) => {
            assert!(!e.is_empty());
            check(input, &e, p);
        }
    }
    let p = Path::new("authkeys");
    match parse_authkeys(p, input) {
        Ok(ok) => check(input, &ok.warnings, p),
        Err(e) => {
            assert!(!e.is_empty());
            check(input, &e, p);
        }
    }
    if let Ok(s) = std::str::from_utf8(input) {
        let _ = parse_time(s);
    }
}

#[test]
fn parsers_never_panic() {
    let fixtures: Vec<Vec<u8>> = ["ha.cf", "haresources", "authkeys"]
        .iter()
        .flat_map(|f| {
            ["classic", "classic-10ms"].map(|d| {
                std::fs::read(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/fixtures")
                        .join(d)
                        .join(f),
                )
                .unwrap()
            })
        })
        .collect();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut count = 0usize;
    for i in 0..20_000 {
        let input = match i % 5 {
            0 => random_bytes(&mut rng),
            1 => random_text(&mut rng, HA_CF_WORDS),
            2 => random_text(&mut rng, HAR_WORDS),
            3 => random_text(&mut rng, AUTH_WORDS),
            _ => {
                let base = &fixtures[rng.below(fixtures.len())];
                mutate(&mut rng, base)
            }
        };
        run_all(&input);
        count += 1;
    }
    assert_eq!(count, 20_000);
    for t in [
        "",
        "0",
        ".5",
        "5.",
        "1e3",
        "10 ms",
        "ms",
        "10mS",
        "1.5us",
        "4294967.2955",
    ] {
        let _ = parse_time(t);
    }
}

#[test]
fn time_parser_random_strings() {
    let mut rng = Rng(42);
    let alphabet = [
        "0", "1", "9", ".", "m", "s", "u", "M", "S", " ", "-", "e", "\u{e9}",
    ];
    for _ in 0..20_000 {
        let n = rng.below(30);
        let s: String = (0..n).map(|_| rng.pick(&alphabet)).collect();
        if let Ok(t) = parse_time(&s) {
            assert!(t.value.as_millis() <= u128::from(u32::MAX));
            assert_eq!(t.value.subsec_nanos() % 1_000_000, 0, "whole milliseconds");
        }
    }
}
