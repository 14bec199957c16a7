//! The ic-agent transport up to the wire (no replica runs on these machines): identities from
//! PEM files as icp-cli, dfx and openssl write them, and the requests the client's calls put on
//! the wire, captured by a local HTTP listener and decoded from their CBOR envelopes.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use candid::Principal;
use ciborium::Value;
use flotilla_client::agent::{load_identity, AgentOptions, AgentTransport, IdentityError, Network};
use flotilla_client::{Client, Error, Policy, RejectCode};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/identities")
        .join(name)
}

/// Each PEM's principal (SEC1 and PKCS#8 forms, as dfx and icp-cli write them) is the self-authenticating principal of the public key openssl
/// derived from it (`*.pub.der`), and the identity signs with that key.
#[test]
fn identities_load_from_pem_files() {
    for (pem, der, sig_len) in [
        ("ed25519.pem", "ed25519.pub.der", 64),
        ("secp256k1.pem", "secp256k1.pub.der", 64),
        // The same key as PKCS#8: the form `icp identity export` writes.
        ("secp256k1.pkcs8.pem", "secp256k1.pub.der", 64),
        ("p256.pem", "p256.pub.der", 64),
    ] {
        let id = load_identity(&fixture(pem)).unwrap_or_else(|e| panic!("{pem}: {e}"));
        let der = std::fs::read(fixture(der)).unwrap();
        assert_eq!(id.public_key(), Some(der.clone()), "{pem}");
        assert_eq!(
            id.sender().unwrap(),
            Principal::self_authenticating(&der),
            "{pem}"
        );
        let sig = id.sign_arbitrary(b"flotilla").unwrap();
        assert_eq!(sig.signature.map(|s| s.len()), Some(sig_len), "{pem}");
    }
    // A file that is not a key names the file.
    let e = load_identity(&fixture("ed25519.pub.der")).err().unwrap();
    assert!(matches!(e, IdentityError::NotAKey(ref p) if p.ends_with("ed25519.pub.der")));
}

#[derive(Clone, Debug)]
struct Captured {
    path: String,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Wire {
    seen: Arc<Mutex<Vec<Captured>>>,
}

const ROOT_KEY: [u8; 133] = [7u8; 133];

async fn status() -> (StatusCode, Vec<u8>) {
    let status = Value::Map(vec![
        (
            Value::Text("ic_api_version".into()),
            Value::Text("0.18.0".into()),
        ),
        (
            Value::Text("root_key".into()),
            Value::Bytes(ROOT_KEY.to_vec()),
        ),
    ]);
    let mut out = vec![];
    // The self-describing CBOR tag, as replicas send it.
    ciborium::into_writer(&Value::Tag(55799, Box::new(status)), &mut out).unwrap();
    (StatusCode::OK, out)
}

/// Records the request and answers 500: the client sees a transient failure and retries.
/// (A 503 would be retried inside ic-agent first, six times.)
async fn capture(
    State(w): State<Wire>,
    UrlPath((version, canister, kind)): UrlPath<(String, String, String)>,
    body: Bytes,
) -> StatusCode {
    w.seen.lock().unwrap().push(Captured {
        path: format!("/api/{version}/canister/{canister}/{kind}"),
        body: body.to_vec(),
    });
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn serve() -> (String, Wire) {
    let wire = Wire::default();
    let app = Router::new()
        .route("/api/v2/status", get(status))
        .route("/api/{version}/canister/{canister}/{kind}", post(capture))
        .with_state(wire.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), wire)
}

fn field<'a>(map: &'a Value, name: &str) -> &'a Value {
    let Value::Map(m) = map else {
        panic!("not a map: {map:?}")
    };
    &m.iter()
        .find(|(k, _)| k.as_text() == Some(name))
        .unwrap_or_else(|| panic!("no field {name} in {map:?}"))
        .1
}

fn bytes(v: &Value) -> Vec<u8> {
    v.as_bytes()
        .cloned()
        .unwrap_or_else(|| panic!("not bytes: {v:?}"))
}

fn envelope(c: &Captured) -> Value {
    match ciborium::from_reader::<Value, _>(&c.body[..]).unwrap() {
        Value::Tag(55799, v) => *v,
        v => v,
    }
}

/// A read and a write through the client: the root key comes from the status endpoint, the
/// route query goes to the index with the names as Candid, the write to the partition
/// of the (cached) route, each signed by the PEM's identity, and a 503 is retried as a
/// transient failure until the policy gives up.
#[tokio::test(flavor = "current_thread")]
async fn the_client_puts_signed_candid_requests_on_the_wire() {
    let (url, wire) = serve().await;
    let network = Network::parse(&url).unwrap();
    assert!(!network.is_mainnet());
    let identity = load_identity(&fixture("ed25519.pem")).unwrap();
    let der = std::fs::read(fixture("ed25519.pub.der")).unwrap();
    let me = Principal::self_authenticating(&der);
    let opts = AgentOptions {
        update_timeout: Duration::from_secs(5),
        ..AgentOptions::default()
    };
    let transport = AgentTransport::connect(&network, identity, opts)
        .await
        .unwrap();
    assert_eq!(transport.principal(), me);
    assert_eq!(transport.agent().read_root_key(), ROOT_KEY.to_vec());

    let index = Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
    let policy = Policy {
        max_attempts: 2,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        ..Policy::default()
    };
    let client = Client::new(transport, index).with_policy(policy);

    // A read: the index's route query, tried twice, then given up.
    let r = client.get("notes", b"k1").await;
    assert!(matches!(r, Err(Error::GaveUp { .. })), "{r:?}");
    let seen = wire.seen.lock().unwrap().clone();
    let queries: Vec<_> = seen.iter().filter(|c| c.path.ends_with("/query")).collect();
    assert_eq!(queries.len(), 2, "{seen:?}");
    for q in &queries {
        assert_eq!(q.path, format!("/api/v3/canister/{index}/query"));
        let env = envelope(q);
        let content = field(&env, "content");
        assert_eq!(field(content, "request_type").as_text(), Some("query"));
        assert_eq!(bytes(field(content, "canister_id")), index.as_slice());
        assert_eq!(field(content, "method_name").as_text(), Some("route"));
        assert_eq!(bytes(field(content, "sender")), me.as_slice());
        let (names,): (Vec<String>,) = candid::decode_args(&bytes(field(content, "arg"))).unwrap();
        assert_eq!(names, vec!["notes".to_string()]);
        assert_eq!(bytes(field(&env, "sender_pubkey")), der);
        assert_eq!(bytes(field(&env, "sender_sig")).len(), 64);
    }

    // A write with a route known: one update to the partition, with an op id, retried with
    // the same op id.
    let partition = Principal::from_text("rrkah-fqaaa-aaaaa-aaaaq-cai").unwrap();
    client.remember_route(
        "notes",
        flotilla_types::InnerKey {
            partition,
            subdb: 7,
        },
    );
    let w = client.put("notes", b"k1", b"v1").await;
    match w {
        Err(Error::GaveUp { last, .. }) => assert!(last.contains("500"), "{last}"),
        other => panic!("{other:?}"),
    }
    let seen = wire.seen.lock().unwrap().clone();
    let calls: Vec<_> = seen.iter().filter(|c| c.path.ends_with("/call")).collect();
    assert_eq!(calls.len(), 2, "{seen:?}");
    let mut op_ids = vec![];
    for c in &calls {
        assert_eq!(c.path, format!("/api/v4/canister/{partition}/call"));
        let env = envelope(c);
        let content = field(&env, "content");
        assert_eq!(field(content, "request_type").as_text(), Some("call"));
        assert_eq!(field(content, "method_name").as_text(), Some("put"));
        assert_eq!(bytes(field(content, "sender")), me.as_slice());
        let (args,): (flotilla_types::partition::PutArgs,) =
            candid::decode_args(&bytes(field(content, "arg"))).unwrap();
        assert_eq!(args.subdb, 7);
        assert_eq!(args.key.as_slice(), b"k1");
        assert_eq!(args.value.as_slice(), b"v1");
        op_ids.push(args.op_id.0.to_vec());
    }
    assert_eq!(op_ids[0], op_ids[1], "a retry carries the same op id");
    assert!(op_ids[0].len() >= 16);
}

/// Nothing listens: the failure is a transport error naming the address, not a panic.
#[tokio::test(flavor = "current_thread")]
async fn an_unreachable_network_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let network = Network::parse(&format!("http://{addr}")).unwrap();
    let e = AgentTransport::connect(
        &network,
        flotilla_client::agent::anonymous(),
        AgentOptions::default(),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(e.code, RejectCode::Transport);
    assert!(e.message.contains(&addr.to_string()), "{}", e.message);
}
