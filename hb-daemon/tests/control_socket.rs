//! The control socket end to end: `control::serve` with a fake main loop, clients over the
//! Unix socket.

// Test helpers outside #[test] functions: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    time::Duration,
};

use common::FakeHbd;
use hb_daemon::control::{self, Request, Response, Scope};

const T: Duration = Duration::from_secs(5);

#[test]
fn every_request_round_trips() {
    let hbd = FakeHbd::start();
    let path = hbd.socket();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    match control::call(&path, &Request::Status, T).unwrap() {
        Response::Status(s) => {
            assert_eq!(s, common::status_report());
        }
        other => panic!("{other:?}"),
    }
    match control::call(&path, &Request::Stats, T).unwrap() {
        Response::Stats(s) => {
            let l = &s.peers[0].links[0];
            assert_eq!((l.received, l.lost), (1001, 5));
            assert_eq!(s.rejects.get("bad_auth"), Some(&1));
        }
        other => panic!("{other:?}"),
    }
    let ack = control::call(
        &path,
        &Request::Standby {
            scope: Scope::Foreign,
        },
        T,
    )
    .unwrap();
    assert_eq!(
        ack,
        Response::Ack {
            message: "standby foreign requested".into()
        }
    );
    control::call(&path, &Request::Takeover { scope: Scope::All }, T).unwrap();
    control::call(&path, &Request::ResetStats, T).unwrap();
    match control::call(&path, &Request::Stats, T).unwrap() {
        Response::Stats(s) => assert_eq!(s.peers[0].links[0].received, 0),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        *hbd.seen.lock().unwrap(),
        vec![
            Request::Status,
            Request::Stats,
            Request::Standby {
                scope: Scope::Foreign
            },
            Request::Takeover { scope: Scope::All },
            Request::ResetStats,
            Request::Stats,
        ]
    );
}

#[test]
fn several_requests_on_one_connection_and_bad_lines() {
    let hbd = FakeHbd::start();
    let mut stream = UnixStream::connect(hbd.socket()).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    stream
        .write_all(
            b"{\"request\":\"takeover\",\"scope\":\"local\"}\n\nnot json\n{\"request\":\"fly\"}\n{\"request\":\"standby\"}\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut answers = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        answers.push(serde_json::from_str::<Response>(&line).unwrap());
    }
    assert_eq!(
        answers[0],
        Response::Ack {
            message: "takeover local requested".into()
        }
    );
    assert!(
        matches!(&answers[1], Response::Error { message } if message.starts_with("bad request"))
    );
    assert!(matches!(&answers[2], Response::Error { message } if message.contains("fly")));
    assert_eq!(
        answers[3],
        Response::Ack {
            message: "standby all requested".into()
        }
    );
    // Only the two valid requests reached the loop.
    assert_eq!(hbd.seen.lock().unwrap().len(), 2);
}

#[test]
fn a_stopped_loop_is_reported_and_a_missing_socket_is_not_running() {
    let hbd = FakeHbd::start();
    let path = hbd.socket();
    // Shutdown ends the fake loop; serve() then returns and the listener closes.
    assert_eq!(
        control::call(&path, &Request::Shutdown, T).unwrap(),
        Response::Ack {
            message: "shutting down".into()
        }
    );
    let deadline = std::time::Instant::now() + T;
    loop {
        match control::call(&path, &Request::Status, T) {
            Err(control::ClientError::NotRunning { .. }) => break,
            Ok(Response::Error { message }) => {
                assert_eq!(message, "hbd is shutting down");
            }
            // Connected to the backlog of a listener that is being closed.
            Err(control::ClientError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("{other:?}"),
        }
        assert!(std::time::Instant::now() < deadline, "socket never closed");
        std::thread::sleep(Duration::from_millis(10));
    }
    // serve() removed its socket file on the way out.
    let deadline = std::time::Instant::now() + T;
    while path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "socket file left behind"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let gone = hbd.dir.path().join("nothing.sock");
    let err = control::call(&gone, &Request::Status, T).unwrap_err();
    assert!(err.to_string().starts_with("hbd is not running"), "{err}");
}
