//! Malformed input is dropped and the server keeps serving.

mod support;

use rtc_stun::message::{Message, MessageType, CLASS_REQUEST, METHOD_BINDING};
use support::*;

const MALFORMED: &str = include_str!("../../../tests/fixtures/stun/malformed.hex");

async fn binding_works(client: &mut TestClient) {
    let mut request = Message::new();
    request.set_type(MessageType::new(METHOD_BINDING, CLASS_REQUEST));
    request.new_transaction_id().unwrap();
    request.write_header();
    let response = client.transact(&request).await;
    assert_eq!(error_code(&response), None);
}

#[tokio::test]
async fn malformed_datagrams_are_dropped() {
    let server = start(loopback_config()).await;
    let mut attacker = TestClient::udp(server.udp_addrs()[0]).await;
    let inputs = hex_fixture(MALFORMED);
    assert_eq!(inputs.len(), 5);
    for (name, bytes) in &inputs {
        attacker.send_raw(bytes).await;
        let reply = attacker
            .try_recv_raw(std::time::Duration::from_millis(100))
            .await;
        assert_eq!(reply, None, "{name} got a reply");
    }
    let mut other = TestClient::udp(server.udp_addrs()[0]).await;
    binding_works(&mut other).await;
    binding_works(&mut attacker).await;
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_stream_messages_do_not_stop_the_server() {
    let server = start(loopback_config()).await;
    for (_, bytes) in hex_fixture(MALFORMED) {
        let mut attacker = TestClient::tcp(server.tcp_addrs()[0]).await;
        attacker.send_raw(&bytes).await;
    }
    let mut attacker = TestClient::tcp(server.tcp_addrs()[0]).await;
    attacker.send_raw(&[0xff; 64]).await;
    let mut other = TestClient::tcp(server.tcp_addrs()[0]).await;
    binding_works(&mut other).await;
    server.shutdown().await;
}

/// The test client decodes with `rtc-stun`; this pins down that its decoder and getters reject
/// the fixture inputs instead of panicking. The server itself parses with its own view.
#[test]
fn rtc_stun_rejects_fixture_inputs() {
    use rtc_stun::attributes::ATTR_XORMAPPED_ADDRESS;
    use rtc_stun::error_code::ErrorCodeAttribute;
    use rtc_stun::message::Getter;
    use rtc_stun::xoraddr::XorMappedAddress;

    for (name, bytes) in hex_fixture(MALFORMED) {
        let mut message = Message::new();
        let decoded = message.unmarshal_binary(&bytes);
        match name.as_str() {
            "xor-mapped-address-zero-length" => {
                assert!(decoded.is_ok(), "{name} decodes");
                let mut address = XorMappedAddress::default();
                let got = address.get_from_as(&message, ATTR_XORMAPPED_ADDRESS);
                assert!(got.is_err(), "{name} has no address");
            }
            "error-code-zero-length" => {
                assert!(decoded.is_ok(), "{name} decodes");
                let got = ErrorCodeAttribute::default().get_from(&message);
                assert!(got.is_err(), "{name} has no error code");
            }
            _ => assert!(decoded.is_err(), "{name} is rejected"),
        }
    }
}
