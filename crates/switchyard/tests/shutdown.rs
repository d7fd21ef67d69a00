//! Shutting the server down sends every client `server_shutdown` and close code 1001, and the
//! server stops once they are closed.

mod common;

use common::{loopback_config, Client, TestServer};
use switchyard_proto::{ErrorCode, ServerMessage};

/// Reads past room events until the `server_shutdown` error, then expects close code 1001.
async fn assert_shutdown_close(client: &mut Client) {
    loop {
        match client.recv().await {
            ServerMessage::Error { code, .. } => {
                assert_eq!(code, ErrorCode::ServerShutdown);
                break;
            }
            ServerMessage::ParticipantLeft { .. } => {}
            other => panic!("expected server_shutdown, got {other:?}"),
        }
    }
    assert_eq!(client.expect_close().await, 1001);
}

#[tokio::test]
async fn shutdown_sends_server_shutdown_and_1001() {
    let server = TestServer::start(loopback_config()).await;
    let mut ada = server.connect().await;
    let mut grace = server.connect().await;
    let mut lurker = server.connect().await;
    ada.join("demo", "Ada").await;
    grace.join("demo", "Grace").await;
    let _grace_joined = ada.recv().await;

    let stopping = tokio::spawn(server.stop());

    assert_shutdown_close(&mut ada).await;
    assert_shutdown_close(&mut grace).await;
    // A connection that never joined is closed the same way.
    assert_shutdown_close(&mut lurker).await;
    stopping.await.expect("server stopped cleanly");
}
