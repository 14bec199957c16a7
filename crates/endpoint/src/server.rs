//! The HTTP routes of the IC interface over a [`Backend`].
//!
//! | route | what it does |
//! |---|---|
//! | `GET /api/v2/status` | CBOR status with the root key |
//! | `POST /api/v2,v3/canister/<id>/query` | a query, answered unsigned (no node signatures) |
//! | `POST /api/v2/canister/<id>/call` | an update, accepted (202), answered through `read_state` |
//! | `POST /api/v3,v4/canister/<id>/call` | an update, answered synchronously with a certificate of its `request_status` (202 if it takes longer than [`SYNC_WAIT`], or if it is a replay of a request still running) |
//! | `POST /api/v2,v3/canister/<id>/read_state` | a certificate of `time` and of the `request_status` of the caller's own requests |
//!
//! Every request is authenticated ([`crate::auth`]) before anything runs. A call whose request
//! id was seen before is never executed again: it is answered from its recorded status.

use crate::auth::{authenticate, AuthError};
use crate::certify::{state_tree, RootKey, Status};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use candid::Principal;
use ic_transport_types::{
    Envelope, EnvelopeContent, QueryResponse, ReadStateResponse, RejectCode, RejectResponse,
    ReplyResponse, RequestId, TransportCallResponse,
};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a v3/v4 call waits for its answer before answering 202 Accepted.
pub const SYNC_WAIT: Duration = Duration::from_secs(10);
/// Largest request body accepted (the IC's ingress limit is 2 MiB of argument plus the
/// envelope).
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;
/// Requests whose status is remembered; the oldest are forgotten past it.
pub const MAX_REMEMBERED_REQUESTS: usize = 100_000;

/// A canister's answer that is not a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// The IC's reject code (1 to 6).
    pub code: u64,
    pub message: String,
}

/// Whether a method runs as a query or an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Query,
    Update,
}

/// The future of one call.
pub type Answer = Pin<Box<dyn Future<Output = Result<Vec<u8>, Reject>> + Send>>;

/// What runs the canisters: the demo's simulated world, or a test double.
pub trait Backend: Send + Sync + 'static {
    fn call(
        &self,
        caller: Principal,
        canister: Principal,
        method: String,
        kind: Kind,
        arg: Vec<u8>,
    ) -> Answer;
}

struct Shared {
    backend: Box<dyn Backend>,
    root: RootKey,
    requests: Mutex<Requests>,
}

#[derive(Default)]
struct Requests {
    by_id: HashMap<RequestId, (Principal, Status)>,
    order: std::collections::VecDeque<RequestId>,
}

impl Requests {
    fn insert(&mut self, id: RequestId, sender: Principal, s: Status) {
        if self.by_id.insert(id, (sender, s)).is_none() {
            self.order.push_back(id);
            while self.order.len() > MAX_REMEMBERED_REQUESTS {
                if let Some(old) = self.order.pop_front() {
                    self.by_id.remove(&old);
                }
            }
        }
    }
}

/// The router of the IC interface over `backend`, signing with `root`.
pub fn router(backend: Box<dyn Backend>, root: RootKey) -> Router {
    let shared = Arc::new(Shared {
        backend,
        root,
        requests: Mutex::new(Requests::default()),
    });
    Router::new()
        .route("/api/v2/status", get(status))
        .route("/api/{version}/canister/{id}/query", post(query))
        .route("/api/{version}/canister/{id}/call", post(call))
        .route("/api/{version}/canister/{id}/read_state", post(read_state))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(shared)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn cbor<T: serde::Serialize>(code: StatusCode, v: &T) -> Response {
    let mut out = vec![];
    // The self-describing tag, as replicas send it.
    let tagged = ciborium::tag::Required::<&T, 55799>(v);
    match ciborium::into_writer(&tagged, &mut out) {
        Ok(()) => (code, [(header::CONTENT_TYPE, "application/cbor")], out).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn refuse(code: StatusCode, why: impl std::fmt::Display) -> Response {
    (code, why.to_string()).into_response()
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    #[derive(serde::Serialize)]
    struct Status<'a> {
        ic_api_version: &'a str,
        #[serde(with = "serde_bytes")]
        root_key: &'a [u8],
        impl_version: &'a str,
        replica_health_status: &'a str,
    }
    cbor(
        StatusCode::OK,
        &Status {
            ic_api_version: "0.18.0",
            root_key: s.root.der(),
            // Clients recognise the demo by this prefix (its queries are not node-signed).
            impl_version: concat!("flotilla-demo ", env!("CARGO_PKG_VERSION")),
            replica_health_status: "healthy",
        },
    )
}

/// Decodes and authenticates an envelope posted to `/api/<v>/canister/<id>/...`.
fn open(
    id: &str,
    body: &[u8],
) -> Result<(Envelope<'static>, RequestId, Principal, Principal), Response> {
    let effective = Principal::from_text(id).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("bad canister id {id}: {e}"),
        )
    })?;
    // serde_cbor, the codec ic-transport-types is made with: its `Principal` fields decode from
    // CBOR byte strings there (ciborium hands them to candid's visitor as human-readable).
    let env: Envelope<'static> = serde_cbor::from_slice(body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("not a CBOR envelope: {e}")))?;
    let rid = env.content.to_request_id();
    let sender = authenticate(&env, &rid, now_ns()).map_err(|e: AuthError| {
        let code = match e {
            AuthError::Expired { .. } | AuthError::TooFarAhead { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        };
        refuse(code, e)
    })?;
    if let EnvelopeContent::Call { canister_id, .. } | EnvelopeContent::Query { canister_id, .. } =
        &*env.content
    {
        if *canister_id != effective && *canister_id != Principal::management_canister() {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("the request is for {canister_id}, posted to {effective}"),
            ));
        }
    }
    Ok((env, rid, sender, effective))
}

/// The method call a query or call envelope carries.
struct Method {
    canister_id: Principal,
    method_name: String,
    arg: Vec<u8>,
}

/// [`open`] for the query and call routes: the envelope must be of the route's kind.
fn open_method(
    id: &str,
    body: &[u8],
    want: Kind,
) -> Result<(RequestId, Principal, Method), Response> {
    let (env, rid, sender, _) = open(id, body)?;
    match (want, env.content.into_owned()) {
        (
            Kind::Query,
            EnvelopeContent::Query {
                canister_id,
                method_name,
                arg,
                ..
            },
        )
        | (
            Kind::Update,
            EnvelopeContent::Call {
                canister_id,
                method_name,
                arg,
                ..
            },
        ) => Ok((
            rid,
            sender,
            Method {
                canister_id,
                method_name,
                arg,
            },
        )),
        (Kind::Query, _) => Err(refuse(StatusCode::BAD_REQUEST, "not a query")),
        (Kind::Update, _) => Err(refuse(StatusCode::BAD_REQUEST, "not a call")),
    }
}

fn reject_code(code: u64) -> RejectCode {
    RejectCode::try_from(code).unwrap_or(RejectCode::CanisterError)
}

async fn query(
    State(s): State<Arc<Shared>>,
    Path((_version, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (
        _rid,
        sender,
        Method {
            canister_id,
            method_name,
            arg,
        },
    ) = match open_method(&id, &body, Kind::Query) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let answer = s
        .backend
        .call(sender, canister_id, method_name, Kind::Query, arg)
        .await;
    let r = match answer {
        Ok(arg) => QueryResponse::Replied {
            reply: ReplyResponse { arg },
            signatures: vec![],
        },
        Err(rej) => QueryResponse::Rejected {
            reject: RejectResponse {
                reject_code: reject_code(rej.code),
                reject_message: rej.message,
                error_code: None,
            },
            signatures: vec![],
        },
    };
    cbor(StatusCode::OK, &r)
}

async fn call(
    State(s): State<Arc<Shared>>,
    Path((version, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (
        rid,
        sender,
        Method {
            canister_id,
            method_name,
            arg,
        },
    ) = match open_method(&id, &body, Kind::Update) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let recorded = {
        let mut reqs = s.requests.lock().expect("requests lock");
        let recorded = reqs.by_id.get(&rid).map(|(_, st)| st.clone());
        if recorded.is_none() {
            reqs.insert(rid, sender, Status::Processing);
        }
        recorded
    };
    let done = match recorded {
        // A replay: answered from the recorded status, never run again.
        Some(st) => st,
        None => {
            // Runs to its end whether or not this HTTP request waits for it: dropping the
            // handle on a timeout leaves the task running.
            let shared = s.clone();
            let answer = s
                .backend
                .call(sender, canister_id, method_name, Kind::Update, arg);
            let task = tokio::spawn(async move {
                let st = match answer.await {
                    Ok(reply) => Status::Replied(reply),
                    Err(r) => Status::Rejected {
                        code: r.code,
                        message: r.message,
                    },
                };
                shared
                    .requests
                    .lock()
                    .expect("requests lock")
                    .insert(rid, sender, st.clone());
                st
            });
            if version == "v2" {
                return StatusCode::ACCEPTED.into_response();
            }
            match tokio::time::timeout(SYNC_WAIT, task).await {
                Ok(Ok(st)) => st,
                // Still running (or the task failed): the caller polls `read_state`.
                _ => Status::Processing,
            }
        }
    };
    if version == "v2" || done == Status::Processing {
        return StatusCode::ACCEPTED.into_response();
    }
    let cert = s.root.certify(state_tree(now_ns(), &[(rid, done)]));
    cbor(
        StatusCode::OK,
        &TransportCallResponse::Replied { certificate: cert },
    )
}

async fn read_state(
    State(s): State<Arc<Shared>>,
    Path((_version, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (env, _rid, sender, _) = match open(&id, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let EnvelopeContent::ReadState { paths, .. } = env.content.into_owned() else {
        return refuse(StatusCode::BAD_REQUEST, "not a read_state request");
    };
    let mut found = vec![];
    for path in &paths {
        let labels: Vec<&[u8]> = path.iter().map(|l| l.as_bytes()).collect();
        match labels.as_slice() {
            [b"time"] => {}
            [b"request_status", id, ..] => {
                let Ok(id) = <[u8; 32]>::try_from(*id) else {
                    return refuse(StatusCode::BAD_REQUEST, "a request id is 32 bytes");
                };
                let rid = RequestId::new(&id);
                let reqs = s.requests.lock().expect("requests lock");
                if let Some((owner, st)) = reqs.by_id.get(&rid) {
                    // Only the sender of a request may read its status.
                    if *owner != sender {
                        return refuse(StatusCode::FORBIDDEN, "not the sender of that request");
                    }
                    found.push((rid, st.clone()));
                }
            }
            other => {
                return refuse(
                    StatusCode::NOT_FOUND,
                    format!(
                        "path {:?} is not served (time and request_status are)",
                        other
                            .iter()
                            .map(|l| String::from_utf8_lossy(l).into_owned())
                            .collect::<Vec<_>>()
                    ),
                )
            }
        }
    }
    let cert = s.root.certify(state_tree(now_ns(), &found));
    cbor(StatusCode::OK, &ReadStateResponse { certificate: cert })
}
