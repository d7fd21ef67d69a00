//! 1,000 participants join one room at once, with bounded concurrency, while a separate room
//! keeps working: each join gets `joined`, and the other room's chat round trip still
//! completes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{loopback_config, TestServer, WAIT};
use switchyard_proto::ServerMessage;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const JOINS: usize = 1000;

/// Connections opening or joining at the same time.
const CONCURRENCY: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_joins_leave_other_room_working() {
    // The joiners drop their connections once joined and stay in the room for the grace period,
    // so nobody has to read the events of the others' joins.
    let config = switchyard::ServerConfig {
        max_participants_per_room: JOINS + 1,
        reconnect_grace: Duration::from_secs(600),
        ..loopback_config()
    };
    let server = TestServer::start(config).await;
    let addr = server.http_addr;

    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    ada.join("quiet", "Ada").await;
    grace.join("quiet", "Grace").await;
    let _grace_joined = ada.recv().await;

    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut joins = JoinSet::new();
    for index in 0..JOINS {
        let permits = Arc::clone(&permits);
        joins.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            let mut client = common::Client::connect(addr, None).await;
            let (id, _) = client.join("crowd", &format!("Guest {index}")).await;
            id
        });
    }

    // The quiet room works while the joins run: a chat reaches both members.
    ada.send_json(serde_json::json!({"type": "chat", "id": "c1", "text": "hello"}))
        .await;
    for client in [&mut ada, &mut grace] {
        loop {
            match client.recv().await {
                ServerMessage::Chat { text, .. } => {
                    assert_eq!(text, "hello");
                    break;
                }
                ServerMessage::Ok => {}
                other => panic!("unexpected message in the quiet room: {other:?}"),
            }
        }
    }

    let mut ids = std::collections::HashSet::new();
    let joined_all = tokio::time::timeout(WAIT * 3, async {
        while let Some(result) = joins.join_next().await {
            ids.insert(result.expect("join task panicked"));
        }
    })
    .await;
    assert!(
        joined_all.is_ok(),
        "joins did not finish within {:?}",
        WAIT * 3
    );
    assert_eq!(ids.len(), JOINS, "participant ids are not unique");

    // A late joiner gets all of them in its roster.
    let mut late = server.connect().await;
    let (_, roster) = late.join("crowd", "Late").await;
    assert_eq!(roster.len(), JOINS);

    drop((ada, grace, late));
    server.stop().await;
}
