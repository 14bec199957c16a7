//! `flotilla demo` serving: the simulated deployment runs on in real time on its own thread,
//! and the IC's HTTP interface (`flotilla_endpoint`) sends every request into it as an ingress
//! message or a query from the request's authenticated sender.
//!
//! One round of the world every `round` of real time (20 ms by default: a call that takes the
//! world's usual 2-3 rounds answers in about 60 ms). Certificates carry real time; the world
//! keeps its own simulated clock.

use crate::demo_routes::{demo_router, DemoState};
use crate::observe::{observe, Observation};
use crate::Failure;
use candid::Principal;
use flotilla_client::RejectCode;
use flotilla_endpoint::{router, Answer, Backend, Kind, Reject, RootKey};
use flotilla_sim::World;
use flotilla_types::dispatch::MethodKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Where a call's answer goes.
type ReplyTo = oneshot::Sender<Result<Vec<u8>, Reject>>;

/// What the world's thread is asked to do.
pub enum Job {
    /// A call from outside (an ingress message or a query), answered when its reply arrives.
    Call {
        caller: Principal,
        canister: Principal,
        method: String,
        kind: Kind,
        arg: Vec<u8>,
        reply: ReplyTo,
    },
    /// The observer's view, with the requests numbered after `after`.
    Observe {
        after: u64,
        reply: oneshot::Sender<Observation>,
    },
}

/// The endpoint's way into the world's thread.
#[derive(Clone)]
pub struct WorldBackend {
    jobs: mpsc::Sender<Job>,
}

impl WorldBackend {
    /// Sends `job`; false once the world has stopped.
    pub fn send(&self, job: Job) -> bool {
        self.jobs.send(job).is_ok()
    }
}

impl Backend for WorldBackend {
    fn call(
        &self,
        caller: Principal,
        canister: Principal,
        method: String,
        kind: Kind,
        arg: Vec<u8>,
    ) -> Answer {
        let (tx, rx) = oneshot::channel();
        let sent = self.send(Job::Call {
            caller,
            canister,
            method,
            kind,
            arg,
            reply: tx,
        });
        Box::pin(async move {
            if !sent {
                return Err(stopped());
            }
            rx.await.unwrap_or_else(|_| Err(stopped()))
        })
    }
}

fn stopped() -> Reject {
    Reject {
        code: RejectCode::SysTransient.number() as u64,
        message: "the demo's world has stopped".into(),
    }
}

/// The endpoint's side and the world's side of the channel between them.
pub fn channel() -> (WorldBackend, mpsc::Receiver<Job>) {
    let (tx, rx) = mpsc::channel();
    (WorldBackend { jobs: tx }, rx)
}

/// Runs `world` (made to keep serving) on this thread (a world stays on the thread that made
/// it) until `stop` is set: a round every `round`, calls from the endpoint submitted as they
/// come and answered as their replies arrive.
pub fn run_world(mut world: World, jobs: mpsc::Receiver<Job>, round: Duration, stop: &AtomicBool) {
    let round_ms = round.as_millis() as u64;
    let mut pending: Vec<(u64, ReplyTo)> = vec![];
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        while let Ok(job) = jobs.try_recv() {
            match job {
                Job::Call {
                    caller,
                    canister,
                    method,
                    kind,
                    arg,
                    reply,
                } => {
                    let kind = match kind {
                        Kind::Query => MethodKind::Query,
                        Kind::Update => MethodKind::Update,
                    };
                    let t = world.submit(caller, canister, &method, kind, arg);
                    pending.push((t, reply));
                }
                Job::Observe { after, reply } => {
                    let _ = reply.send(observe(&world, after, round_ms));
                }
            }
        }
        world.step();
        pending = std::mem::take(&mut pending)
            .into_iter()
            .filter_map(|(t, reply)| match world.take_reply(t) {
                None => Some((t, reply)),
                Some(r) => {
                    let r = r.map_err(|e| Reject {
                        // A reply lost in the world is an unknown outcome to the caller.
                        code: match e.code {
                            RejectCode::Transport => RejectCode::SysUnknown.number(),
                            c => c.number(),
                        } as u64,
                        message: e.message,
                    });
                    // The caller may have gone away: nothing to do then.
                    let _ = reply.send(r);
                    None
                }
            })
            .collect();
        next += round;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// Everything the demo serves: the IC HTTP interface (certificates signed with the root key
/// of `seed`), the pages, the observer and the demo's control.
pub fn app(backend: WorldBackend, demo: DemoState, seed: u64) -> axum::Router {
    router(
        Box::new(backend.clone()),
        RootKey::from_seed(&seed.to_le_bytes()),
    )
    .merge(crate::web::router())
    .merge(demo_router(backend, demo))
}

/// Serves `world` (made to keep serving) at `listen` until Ctrl-C: the IC HTTP interface,
/// the pages and the observer on a thread of their own, the world on this one.
pub fn serve(world: World, listen: &str, round: Duration, seed: u64) -> Result<(), Failure> {
    let index = world.index_id();
    let demo = DemoState {
        index,
        admin: world.admin(),
    };
    let (backend, jobs) = channel();
    let stop = Arc::new(AtomicBool::new(false));
    let listener = std::net::TcpListener::bind(listen).map_err(|e| {
        Failure(format!(
            "cannot listen on {listen}: {e}; pass --listen ADDR:PORT"
        ))
    })?;
    let addr = listener.local_addr().map_err(|e| Failure(e.to_string()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Failure(e.to_string()))?;
    println!("\nServing the IC HTTP interface at http://{addr} (Ctrl-C to stop)");
    println!("  dashboard        http://{addr}/");
    println!("  notes app        http://{addr}/notes");
    println!("  index canister   {index}");
    println!("  try it           openssl genpkey -algorithm ed25519 -out me.pem");
    println!(
        "                   flotilla create notes --network http://{addr} --index {index} --identity me.pem"
    );
    let stop_http = stop.clone();
    let http = std::thread::spawn(move || -> Result<(), Failure> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Failure(format!("cannot start the async runtime: {e}")))?;
        let r = rt.block_on(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(|e| Failure(e.to_string()))?;
            let app = app(backend, demo, seed);
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .map_err(|e| Failure(format!("the endpoint stopped: {e}")))
        });
        stop_http.store(true, Ordering::SeqCst);
        r
    });
    run_world(world, jobs, round, &stop);
    http.join()
        .map_err(|_| Failure("the endpoint's thread panicked".into()))?
}
