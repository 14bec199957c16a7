//! `flotilla demo` serving: the simulated deployment runs on in real time on its own thread,
//! and the IC's HTTP interface (`flotilla_endpoint`) sends every request into it as an ingress
//! message or a query from the request's authenticated sender.
//!
//! One round of the world every `round` of real time (20 ms by default: a call that takes the
//! world's usual 2-3 rounds answers in about 60 ms). Certificates carry real time; the world
//! keeps its own simulated clock.

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

pub struct Job {
    caller: Principal,
    canister: Principal,
    method: String,
    kind: Kind,
    arg: Vec<u8>,
    reply: ReplyTo,
}

/// The endpoint's way into the world's thread.
pub struct WorldBackend {
    jobs: mpsc::Sender<Job>,
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
        let sent = self.jobs.send(Job {
            caller,
            canister,
            method,
            kind,
            arg,
            reply: tx,
        });
        Box::pin(async move {
            if sent.is_err() {
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

/// Runs `world` on this thread (a world stays on the thread that made it) until `stop` is
/// set: a round every `round`, calls from the endpoint submitted as they come and answered as
/// their replies arrive.
pub fn run_world(mut world: World, jobs: mpsc::Receiver<Job>, round: Duration, stop: &AtomicBool) {
    world.keep_serving();
    let mut pending: Vec<(u64, ReplyTo)> = vec![];
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        while let Ok(job) = jobs.try_recv() {
            let kind = match job.kind {
                Kind::Query => MethodKind::Query,
                Kind::Update => MethodKind::Update,
            };
            let t = world.submit(job.caller, job.canister, &job.method, kind, job.arg);
            pending.push((t, job.reply));
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

/// Serves `world` at `listen` until Ctrl-C: the endpoint on a thread of its own, the world
/// on this one.
pub fn serve(world: World, listen: &str, round: Duration, seed: u64) -> Result<(), Failure> {
    let index = world.index_id();
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
            let app = router(Box::new(backend), RootKey::from_seed(&seed.to_le_bytes()));
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
