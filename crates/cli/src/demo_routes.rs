//! The demo's own HTTP routes beside the IC interface: `GET /flotilla/config` (which index the
//! pages talk to), `GET /flotilla/observer` (see [`crate::observe`]) and
//! `POST /flotilla/demo/move` (the demo's admin asks the index to move a SubDB, so a person
//! can watch a move happen under their own data).

use crate::serve::{Job, WorldBackend};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use candid::Principal;
use flotilla_endpoint::Kind;
use flotilla_types::dispatch::{decode_args, encode_args};
use flotilla_types::index::{MoveRequest, MoveSubDbError};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

/// What the demo's routes need to know.
#[derive(Clone, Copy, Debug)]
pub struct DemoState {
    pub index: Principal,
    /// The admin who installed the index in the simulated world.
    pub admin: Principal,
}

#[derive(Clone)]
struct Shared {
    world: WorldBackend,
    demo: DemoState,
}

/// The demo's routes, over the world's thread.
pub fn demo_router<S: Clone + Send + Sync + 'static>(
    world: WorldBackend,
    demo: DemoState,
) -> Router<S> {
    Router::new()
        .route("/flotilla/config", get(config))
        .route("/flotilla/observer", get(observer))
        .route("/flotilla/demo/move", post(move_subdb))
        .with_state(Shared { world, demo })
}

fn gone() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": "the demo's world has stopped" })),
    )
        .into_response()
}

async fn config(State(s): State<Shared>) -> Response {
    Json(json!({ "index": s.demo.index.to_text(), "demo": true })).into_response()
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
}

async fn observer(State(s): State<Shared>, Query(q): Query<After>) -> Response {
    let (tx, rx) = oneshot::channel();
    if !s.world.send(Job::Observe {
        after: q.after,
        reply: tx,
    }) {
        return gone();
    }
    match rx.await {
        Ok(o) => Json(o).into_response(),
        Err(_) => gone(),
    }
}

#[derive(Deserialize)]
struct MoveBody {
    outer_key: String,
    #[serde(default)]
    target: Option<String>,
}

fn bad(code: StatusCode, error: String) -> Response {
    (code, Json(json!({ "error": error }))).into_response()
}

async fn move_subdb(State(s): State<Shared>, Json(body): Json<MoveBody>) -> Response {
    let target = match body.target.as_deref().map(Principal::from_text).transpose() {
        Ok(t) => t,
        Err(e) => {
            return bad(
                StatusCode::BAD_REQUEST,
                format!("bad target principal: {e}"),
            )
        }
    };
    let arg = encode_args((MoveRequest {
        outer_key: body.outer_key,
        target,
    },));
    let (tx, rx) = oneshot::channel();
    if !s.world.send(Job::Call {
        caller: s.demo.admin,
        canister: s.demo.index,
        method: "move_subdb".into(),
        kind: Kind::Update,
        arg,
        reply: tx,
    }) {
        return gone();
    }
    let reply = match rx.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(reject)) => return bad(StatusCode::BAD_GATEWAY, reject.message),
        Err(_) => return gone(),
    };
    match decode_args::<(Result<Principal, MoveSubDbError>,)>("move_subdb", &reply) {
        Ok((Ok(target),)) => Json(json!({ "target": target.to_text() })).into_response(),
        Ok((Err(e),)) => bad(StatusCode::CONFLICT, e.to_string()),
        Err(e) => bad(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}
