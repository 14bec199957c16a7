//! ic-agent, unmodified, against the endpoint over a backend that counts what it executes:
//! queries and certified updates with Ed25519, secp256k1, P-256, delegated and anonymous
//! identities; a forged signature, an expired request, a bad delegation and a request for
//! another canister are refused with nothing executed; a replayed request is answered from its
//! recorded status and executed once.

use candid::Principal;
use flotilla_endpoint::{router, Answer, Backend, Kind, Reject, RootKey};
use ic_agent::identity::{BasicIdentity, DelegatedIdentity, Prime256v1Identity, Secp256k1Identity};
use ic_agent::{Agent, AgentError, Identity};
use ic_transport_types::{Delegation, Envelope, SignedDelegation};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Executes `echo` (replies with its argument and the caller) and `fail` (rejects, code 4),
/// and records every call it executes.
#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<(Principal, String, Kind)>>>,
}

impl Backend for Recorder {
    fn call(
        &self,
        caller: Principal,
        _c: Principal,
        method: String,
        kind: Kind,
        arg: Vec<u8>,
    ) -> Answer {
        self.calls
            .lock()
            .unwrap()
            .push((caller, method.clone(), kind));
        Box::pin(async move {
            match method.as_str() {
                "echo" => {
                    let mut out = caller.as_slice().to_vec();
                    out.push(b'|');
                    out.extend(arg);
                    Ok(out)
                }
                _ => Err(Reject {
                    code: 4,
                    message: format!("{method} refuses"),
                }),
            }
        })
    }
}

impl Recorder {
    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

const CANISTER: &str = "ryjl3-tyaaa-aaaaa-aaaba-cai";

async fn serve() -> (String, Recorder) {
    let rec = Recorder::default();
    let app = router(Box::new(rec.clone()), RootKey::from_seed(b"test"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), rec)
}

async fn agent(url: &str, id: Box<dyn Identity>) -> Agent {
    let a = Agent::builder()
        .with_url(url)
        .with_boxed_identity(id)
        .with_verify_query_signatures(false)
        .build()
        .unwrap();
    a.fetch_root_key().await.unwrap();
    a
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../client/tests/identities")
        .join(name)
}

fn echoed(who: Principal, arg: &[u8]) -> Vec<u8> {
    let mut v = who.as_slice().to_vec();
    v.push(b'|');
    v.extend_from_slice(arg);
    v
}

fn canister() -> Principal {
    Principal::from_text(CANISTER).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_and_certified_updates_for_every_key_type() {
    let (url, rec) = serve().await;
    let ids: Vec<Box<dyn Identity>> = vec![
        Box::new(BasicIdentity::from_pem_file(fixture("ed25519.pem")).unwrap()),
        Box::new(Secp256k1Identity::from_pem_file(fixture("secp256k1.pem")).unwrap()),
        Box::new(Prime256v1Identity::from_pem_file(fixture("p256.pem")).unwrap()),
        Box::new(ic_agent::identity::AnonymousIdentity),
    ];
    for id in ids {
        let who = id.sender().unwrap();
        let a = agent(&url, id).await;
        let q = a
            .query(&canister(), "echo")
            .with_arg(b"q".to_vec())
            .call()
            .await
            .unwrap();
        assert_eq!(q, echoed(who, b"q"));
        // The agent verifies the certificate (BLS signature against the fetched root key,
        // freshness) and reads the reply from request_status.
        let u = a
            .update(&canister(), "echo")
            .with_arg(b"u".to_vec())
            .call_and_wait()
            .await
            .unwrap();
        assert_eq!(u, echoed(who, b"u"));
        match a.update(&canister(), "fail").call_and_wait().await {
            Err(AgentError::CertifiedReject { reject, .. }) => {
                assert_eq!(reject.reject_code as u64, 4);
                assert_eq!(reject.reject_message, "fail refuses");
            }
            other => panic!("{other:?}"),
        }
        let qr = a.query(&canister(), "fail").call().await;
        assert!(
            matches!(qr, Err(AgentError::UncertifiedReject { .. })),
            "{qr:?}"
        );
    }
    assert_eq!(rec.count(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_root_key_is_refused() {
    let (url, _rec) = serve().await;
    let a = Agent::builder()
        .with_url(&url)
        .with_verify_query_signatures(false)
        .build()
        .unwrap();
    // Not fetched: the agent trusts another key (mainnet's) and must refuse the certificate.
    let r = a.update(&canister(), "echo").call_and_wait().await;
    assert!(
        matches!(r, Err(AgentError::CertificateVerificationFailed())),
        "{r:?}"
    );
}

fn reencode(bytes: &[u8], f: impl FnOnce(&mut Envelope<'static>)) -> Vec<u8> {
    let mut env: Envelope<'static> = serde_cbor::from_slice(bytes).unwrap();
    f(&mut env);
    env.encode_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_misdirected_and_replayed_requests() {
    let (url, rec) = serve().await;
    let id = BasicIdentity::from_pem_file(fixture("ed25519.pem")).unwrap();
    let a = agent(&url, Box::new(id)).await;

    // A forged signature: refused, nothing executed.
    let signed = a
        .update(&canister(), "echo")
        .with_arg(b"x".to_vec())
        .sign()
        .unwrap();
    let forged = reencode(&signed.signed_update, |e| {
        let sig = e.sender_sig.as_mut().unwrap();
        sig[0] ^= 1;
    });
    let r = a.update_signed(canister(), forged).await;
    assert!(
        matches!(&r, Err(AgentError::HttpError(p)) if p.status == 403),
        "{r:?}"
    );
    // Another principal claimed as sender: refused.
    let other = reencode(&signed.signed_update, |e| {
        let mut c = e.content.clone().into_owned();
        if let ic_transport_types::EnvelopeContent::Call { sender, .. } = &mut c {
            *sender = Principal::self_authenticating([9u8; 32]);
        }
        e.content = std::borrow::Cow::Owned(c);
    });
    let r = a.update_signed(canister(), other).await;
    assert!(
        matches!(&r, Err(AgentError::HttpError(p)) if p.status == 403),
        "{r:?}"
    );
    assert_eq!(rec.count(), 0);

    // Expired: refused, nothing executed.
    let past = SystemTime::now() - Duration::from_secs(60);
    let expired = a
        .update(&canister(), "echo")
        .expire_at(past)
        .sign()
        .unwrap();
    let r = a.update_signed(canister(), expired.signed_update).await;
    assert!(
        matches!(&r, Err(AgentError::HttpError(p)) if p.status == 400),
        "{r:?}"
    );
    assert_eq!(rec.count(), 0);

    // Posted to another canister's URL: refused.
    let elsewhere = Principal::from_text("rrkah-fqaaa-aaaaa-aaaaq-cai").unwrap();
    let r = a
        .update_signed(elsewhere, signed.signed_update.clone())
        .await;
    assert!(
        matches!(&r, Err(AgentError::HttpError(p)) if p.status == 400),
        "{r:?}"
    );
    assert_eq!(rec.count(), 0);

    // The genuine request, twice: executed once, both answered.
    for _ in 0..2 {
        let r = a
            .update_signed(canister(), signed.signed_update.clone())
            .await
            .unwrap();
        assert!(
            matches!(r, ic_agent::agent::CallResponse::Response(_)),
            "{r:?}"
        );
    }
    assert_eq!(rec.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegations_are_checked() {
    let (url, rec) = serve().await;
    let root = BasicIdentity::from_pem_file(fixture("ed25519.pem")).unwrap();
    let root_key = root.public_key().unwrap();
    let me = Principal::self_authenticating(&root_key);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let delegate = |expiration: u64, targets: Option<Vec<Principal>>| {
        let session = BasicIdentity::from_raw_key(&[5u8; 32]);
        let d = Delegation {
            pubkey: session.public_key().unwrap(),
            expiration,
            targets,
            permissions: None,
        };
        let sig = root.sign_delegation(&d).unwrap().signature.unwrap();
        DelegatedIdentity::new_unchecked(
            root_key.clone(),
            Box::new(session),
            vec![SignedDelegation {
                delegation: d,
                signature: sig,
            }],
        )
    };
    let hour = 3_600_000_000_000;
    let ok = agent(&url, Box::new(delegate(now + hour, Some(vec![canister()])))).await;
    let r = ok
        .update(&canister(), "echo")
        .call_and_wait()
        .await
        .unwrap();
    assert_eq!(
        r,
        echoed(me, b""),
        "the delegated key acts as the root key's principal"
    );
    let expired = agent(&url, Box::new(delegate(now - hour, None))).await;
    let r = expired.update(&canister(), "echo").call_and_wait().await;
    assert!(
        matches!(&r, Err(AgentError::HttpError(p)) if p.status == 403),
        "{r:?}"
    );
    let other = Principal::from_text("rrkah-fqaaa-aaaaa-aaaaq-cai").unwrap();
    let wrong_target = agent(&url, Box::new(delegate(now + hour, Some(vec![other])))).await;
    let r = wrong_target.query(&canister(), "echo").call().await;
    assert!(
        matches!(&r, Err(AgentError::HttpError(p)) if p.status == 403),
        "{r:?}"
    );
    assert_eq!(rec.count(), 1);
}
