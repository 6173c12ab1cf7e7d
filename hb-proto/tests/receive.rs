//! The core's one entry for bytes (`Node::handle_datagram`): decoding, authentication and the
//! replay rule happen in the core, and what became of each datagram comes out as
//! `Output::Received` for the driver's metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{PeerMsg, Timing, config, drain, groups, ms};
use hb_proto::{
    config::{AuthKey, AuthKeys, AuthMethod, AutoFailback},
    message::Echo,
    node::{LinkId, Node, Output, PeerState, Reception, Rejection},
    packet::{DecodeError, encode},
    replay::RejectReason,
};

fn key() -> AuthKey {
    AuthKey {
        id: 1,
        method: AuthMethod::Sha256,
        secret: b"secret".to_vec(),
    }
}

fn node() -> (Node, Vec<hb_proto::config::ResourceGroup>) {
    let g = groups(&["node1"]);
    let mut c = config(
        &["node1", "node2"],
        "node1",
        g.clone(),
        Timing::FAST,
        AutoFailback::On,
        2,
    );
    c.authkeys = AuthKeys {
        active: 1,
        keys: [(1, key())].into(),
    };
    let mut n = Node::new(&c, 1, ms(0)).unwrap();
    drain(&mut n);
    (n, g)
}

fn receptions(outs: &[Output]) -> Vec<Reception> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Received(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn bytes_in_figures_out() {
    let (mut n, g) = node();
    let mut m = PeerMsg::hb("node2", 5, 1, ms(1), 1).digest(&g);
    m.msg.echoes.push(Echo {
        node: hb_proto::config::node_id("node1"),
        send_time: ms(0),
        hold: Duration::from_millis(1),
    });
    let bytes = encode(&m.msg, &key()).unwrap();
    n.handle_datagram(ms(3), LinkId(1), ms(2), Some(ms(3)), &bytes);
    let outs = drain(&mut n);
    assert_eq!(
        receptions(&outs),
        [Reception::Heard {
            node: "node2".into(),
            link: LinkId(1),
            arrival: ms(2),
            read_at: Some(ms(3)),
            gap: 0,
            rtt: Some(Duration::from_millis(1)),
        }]
    );
    assert_eq!(n.peer_state("node2"), Some(PeerState::Up));

    // The same bytes again: the replay rule refuses them, the state machine never sees them.
    n.handle_datagram(ms(4), LinkId(1), ms(4), None, &bytes);
    let r = receptions(&drain(&mut n));
    assert_eq!(
        r,
        [Reception::Rejected {
            link: LinkId(1),
            reason: Rejection::Replay {
                sender: hb_proto::config::node_id("node2"),
                reason: RejectReason::Replay { last: 1, got: 1 },
            },
        }]
    );
    assert_eq!(n.counters().ignored_stale, 1);
    assert_eq!(n.counters().messages_received, 1);

    // Two heartbeats lost on that link: the gap says so.
    m.msg.seq = 4;
    m.msg.echoes.clear();
    let bytes = encode(&m.msg, &key()).unwrap();
    n.handle_datagram(ms(5), LinkId(1), ms(5), None, &bytes);
    let r = receptions(&drain(&mut n));
    assert!(
        matches!(
            r.as_slice(),
            [Reception::Heard {
                gap: 2,
                rtt: None,
                ..
            }]
        ),
        "{r:?}"
    );

    // Bytes that are not an authentic message.
    n.handle_datagram(ms(6), LinkId(0), ms(6), None, b"not a heartbeat");
    let r = receptions(&drain(&mut n));
    assert!(
        matches!(
            r.as_slice(),
            [Reception::Rejected {
                link: LinkId(0),
                reason: Rejection::Decode(DecodeError::Truncated | DecodeError::BadMagic),
            }]
        ),
        "{r:?}"
    );
    let mut forged = encode(&m.msg, &key()).unwrap();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    n.handle_datagram(ms(7), LinkId(0), ms(7), None, &forged);
    let r = receptions(&drain(&mut n));
    assert_eq!(
        r,
        [Reception::Rejected {
            link: LinkId(0),
            reason: Rejection::Decode(DecodeError::AuthFailed),
        }]
    );
    assert_eq!(
        Rejection::Decode(DecodeError::AuthFailed).label(),
        "auth_failed"
    );
    assert_eq!(n.counters().messages_received, 2);
}

#[test]
fn own_messages_are_dropped_silently() {
    let (mut n, _) = node();
    n.handle_timeout(ms(10));
    let own = drain(&mut n)
        .into_iter()
        .find_map(|o| match o {
            Output::Transmit { msg, .. } => Some(msg),
            _ => None,
        })
        .unwrap();
    let bytes = encode(&own, &key()).unwrap();
    n.handle_datagram(ms(11), LinkId(0), ms(11), None, &bytes);
    assert!(receptions(&drain(&mut n)).is_empty());
    assert_eq!(n.counters().messages_received, 0);
}
