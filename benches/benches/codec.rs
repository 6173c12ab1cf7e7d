//! Wire codec cost per auth method: encode (build + sign), decode (parse + verify), and both,
//! for a typical two-node heartbeat (one echo, two groups).

use std::{collections::BTreeMap, hint::black_box, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hb_proto::{
    Timestamp,
    config::{AuthKey, AuthKeys, AuthMethod},
    message::{Echo, GroupState, Holding, Message, MessageKind, NodeStatus},
    packet::{decode, encode},
};

fn heartbeat() -> Message {
    Message {
        kind: MessageKind::Heartbeat,
        sender: hb_proto::config::node_id("alpha"),
        generation: 1_800_000_000 << 20,
        seq: 123_456,
        send_time: Timestamp::from_nanos(5_000_000_000),
        groups_digest: 0x1234_5678,
        ping: None,
        status: NodeStatus::Active,
        echoes: vec![Echo {
            node: hb_proto::config::node_id("beta"),
            send_time: Timestamp::from_nanos(4_999_000_000),
            hold: Duration::from_micros(300),
        }],
        groups: vec![
            GroupState {
                group: 0,
                holding: Holding::Held,
                failed: false,
                standby: false,
                wants: false,
            },
            GroupState {
                group: 1,
                holding: Holding::None,
                failed: false,
                standby: false,
                wants: false,
            },
        ],
    }
}

fn codec(c: &mut Criterion) {
    let msg = heartbeat();
    for method in AuthMethod::ALL {
        let key = AuthKey {
            id: 1,
            method,
            secret: b"a benchmark secret of some length".to_vec(),
        };
        let keys = AuthKeys {
            active: 1,
            keys: BTreeMap::from([(1, key.clone())]),
        };
        let Ok(bytes) = encode(&msg, &key) else {
            panic!("heartbeat does not encode with {method:?}");
        };
        let mut group = c.benchmark_group(format!("codec/{}", method.name()));
        group.throughput(Throughput::Elements(1));
        group.bench_function("encode", |b| b.iter(|| encode(black_box(&msg), &key)));
        group.bench_function("decode", |b| b.iter(|| decode(black_box(&bytes), &keys)));
        group.bench_function("encode+decode", |b| {
            b.iter(|| match encode(black_box(&msg), &key) {
                Ok(v) => decode(&v, &keys).is_ok(),
                Err(_) => false,
            })
        });
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
