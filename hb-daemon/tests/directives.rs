//! Nothing is silently ignored: every directive `ha.cf` accepts is either acted on by hbd
//! ([`hb_daemon::check::ACTED_ON`]) or, when present, reported as a named warning and listed as
//! not acted on (`HaCf::ignored`, printed by `hbd --check`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use hb_daemon::check::ACTED_ON;
use hb_proto::config::{ha_cf::accepted_directives, parse_ha_cf};

const BASE: &str =
    "keepalive 100ms\ndeadtime 500ms\nbcast eth1\nauto_failback on\nnode a\nnode b\n";

/// A value the parser accepts for a directive hbd does not act on.
fn sample(directive: &str) -> &'static str {
    match directive {
        "crm" | "pacemaker" | "use_apphbd" => "off",
        "hbgenmethod" => "file",
        "hopfudge" => "1",
        "autojoin" => "other",
        // The IGNORED table: any value.
        _ => "x",
    }
}

#[test]
fn every_accepted_directive_is_acted_on_or_warned_by_name() {
    let accepted = accepted_directives();
    for d in ACTED_ON {
        assert!(
            accepted.contains(d),
            "ACTED_ON names {d}, which the parser does not accept"
        );
    }
    let mut checked = 0;
    for d in &accepted {
        if ACTED_ON.contains(d) {
            continue;
        }
        let text = format!("{BASE}{d} {}\n", sample(d));
        let parsed = parse_ha_cf(Path::new("ha.cf"), text.as_bytes())
            .unwrap_or_else(|e| panic!("{d} {}: rejected: {e:?}", sample(d)));
        let line = BASE.lines().count() + 1;
        assert!(
            parsed
                .value
                .ignored
                .iter()
                .any(|i| i.directive == *d && i.line == line && !i.why.is_empty()),
            "{d} is neither acted on by hbd nor listed as ignored: {:?}",
            parsed.value.ignored
        );
        assert!(
            parsed
                .warnings
                .iter()
                .any(|w| w.line == line && w.message.contains(d) && w.message.contains("ignored")),
            "{d}: no warning naming it: {:?}",
            parsed.warnings
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} ignored directives checked");
}

#[test]
fn acted_on_directives_are_not_listed_as_ignored() {
    let text = format!(
        "{BASE}watchdog /dev/watchdog\nstonith_host * external/x hostlist=\"a b\"\nfence_command /bin/true\nfence_delay 1\nfence_timeout 2000ms\nrealtime off\n"
    );
    let parsed = parse_ha_cf(Path::new("ha.cf"), text.as_bytes()).unwrap();
    assert!(
        parsed.value.ignored.is_empty(),
        "{:?}",
        parsed.value.ignored
    );
    let s = parsed.value.stonith_devices();
    assert_eq!(s[0].params, ["hostlist=a b"]);
    assert_eq!(parsed.value.fence_commands, [vec!["/bin/true".to_string()]]);
}
