//! The data commands: `flotilla create | drop | put | get | del | scan | routes | stats |
//! export | load` against a deployment, through the Rust client, and the admin commands
//! `upload-wasm | upgrade` (`fleet.rs`).
//!
//! Each command is written once over any `Transport` ([`exec`]); the binary runs it over
//! ic-agent ([`run`]), the tests over the simulator.

use crate::records::{self, FileCheckpoint, Format};
use crate::{project, Failure};
use candid::Principal;
use clap::{Args, Subcommand, ValueEnum};
use flotilla_client::agent::{load_identity, AgentOptions, AgentTransport, Network};
use flotilla_client::load::{load, LoadError, Progress};
use flotilla_client::{Client, CreateOptions, Error, ScanOptions, Transport};
use flotilla_types::index::{CreatePolicy, IndexStats, PartitionState, RoutesRequest};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Display;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

/// Where and as whom the data commands run (icp-cli's conventions).
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// `local` (icp-cli's local network, http://127.0.0.1:8000), `ic` (mainnet) or a URL
    /// (dfx's local network: http://127.0.0.1:4943).
    #[arg(long, env = "FLOTILLA_NETWORK", default_value = "local")]
    pub network: String,
    /// The index canister's id; default: the `index` canister of the icp-cli (or dfx)
    /// project around the current directory.
    #[arg(long, env = "FLOTILLA_INDEX")]
    pub index: Option<String>,
    /// A PEM file (Ed25519, secp256k1 or P-256; `icp identity export NAME > me.pem`);
    /// default: the anonymous principal.
    #[arg(long, env = "FLOTILLA_IDENTITY")]
    pub identity: Option<PathBuf>,
    /// How read commands print what they read.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Keys and values on the command line are hex, not text.
    #[arg(long)]
    pub hex: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug, Clone)]
pub enum DataCmd {
    /// Create a SubDB named NAME (owned by the caller unless --owner is given by an admin).
    Create {
        #[command(flatten)]
        conn: Conn,
        name: String,
        /// Past this many items, a put evicts the smallest key.
        #[arg(long)]
        hard_cap: Option<u64>,
        #[arg(long)]
        owner: Option<String>,
        /// A principal that may read (repeatable; `2vxsx-fae`, the anonymous principal, makes
        /// the SubDB public).
        #[arg(long = "reader")]
        readers: Vec<String>,
        /// A principal that may write (repeatable).
        #[arg(long = "writer")]
        writers: Vec<String>,
    },
    /// Delete the SubDB NAME and all its items.
    Drop {
        #[command(flatten)]
        conn: Conn,
        name: String,
    },
    /// Set KEY to VALUE in NAME.
    Put {
        #[command(flatten)]
        conn: Conn,
        name: String,
        key: String,
        value: String,
    },
    /// Print the value of KEY in NAME.
    Get {
        #[command(flatten)]
        conn: Conn,
        name: String,
        key: String,
    },
    /// Delete KEY from NAME.
    Del {
        #[command(flatten)]
        conn: Conn,
        name: String,
        key: String,
    },
    /// Print NAME's items in key order.
    Scan {
        #[command(flatten)]
        conn: Conn,
        name: String,
        /// Walk from the last key down.
        #[arg(long)]
        reverse: bool,
        /// First key of the range (inclusive).
        #[arg(long)]
        from: Option<String>,
        /// End of the range (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// Most items printed.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Print every SubDB's route: outer key, partition, local id.
    Routes {
        #[command(flatten)]
        conn: Conn,
    },
    /// Print the fleet: partitions, bytes against the move cap, SubDBs, moves in flight.
    Stats {
        #[command(flatten)]
        conn: Conn,
    },
    /// Write NAME's items as JSON lines (to --out, or standard output).
    Export {
        #[command(flatten)]
        conn: Conn,
        name: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Load JSON lines or CSV (key,value) into NAME with batched writes. Resumable: a rerun
    /// after an interruption continues from FILE.flotilla-load, losing and duplicating
    /// nothing.
    Load {
        #[command(flatten)]
        conn: Conn,
        name: String,
        file: PathBuf,
        /// Default: from the extension (.csv is CSV, anything else JSON lines).
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Upload a partition wasm FILE (raw or gzipped) to the index, in chunks (admins): new
    /// partitions get it; `flotilla upgrade` rolls it out to the others.
    UploadWasm {
        #[command(flatten)]
        conn: Conn,
        file: PathBuf,
    },
    /// Upgrade every partition to the uploaded wasm, a batch at a time (admins): each is
    /// stopped, upgraded and started while the others serve. Waits for the end, showing
    /// progress; fails if a partition kept its old module (its new one trapped, ...).
    Upgrade {
        #[command(flatten)]
        conn: Conn,
        /// Partitions upgraded at once (1 to 50; default 5).
        #[arg(long)]
        batch: Option<u32>,
        /// Start the fleet upgrade and return (`flotilla stats` shows its progress).
        #[arg(long)]
        no_wait: bool,
    },
}

impl DataCmd {
    /// Where and as whom the command runs.
    pub fn conn(&self) -> &Conn {
        conn_of!(self)
    }

    #[cfg(test)]
    pub fn conn_mut(&mut self) -> &mut Conn {
        conn_of!(self)
    }
}

/// The `Conn` of any command (by reference or mutable reference, as `$cmd` is).
macro_rules! conn_of {
    ($cmd:expr) => {
        match $cmd {
            DataCmd::Create { conn, .. }
            | DataCmd::Drop { conn, .. }
            | DataCmd::Put { conn, .. }
            | DataCmd::Get { conn, .. }
            | DataCmd::Del { conn, .. }
            | DataCmd::Scan { conn, .. }
            | DataCmd::Routes { conn }
            | DataCmd::Stats { conn }
            | DataCmd::Export { conn, .. }
            | DataCmd::Load { conn, .. }
            | DataCmd::UploadWasm { conn, .. }
            | DataCmd::Upgrade { conn, .. } => conn,
        }
    };
}
use conn_of;

/// Runs a data command against the network its `Conn` names.
pub fn run(cmd: DataCmd) -> Result<(), Failure> {
    let conn = cmd.conn();
    let network = Network::parse(&conn.network).map_err(|e| Failure(e.to_string()))?;
    let environment = if network.is_mainnet() { "ic" } else { "local" };
    let index = match &conn.index {
        Some(t) => principal(t, "--index")?,
        None => {
            let cwd = std::env::current_dir().map_err(|e| Failure(e.to_string()))?;
            project::find_index(&cwd, environment).map_err(Failure)?.0
        }
    };
    let identity = match &conn.identity {
        Some(p) => load_identity(p).map_err(|e| Failure(e.to_string()))?,
        None => flotilla_client::agent::anonymous(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let transport = AgentTransport::connect(&network, identity, AgentOptions::default())
            .await
            .map_err(|e| {
                Failure(format!(
                    "{}; is the network running (`icp network start -d`), and is --network right?",
                    e.message
                ))
            })?;
        let client = Client::new(transport, index);
        let mut out = std::io::stdout().lock();
        exec(&client, &cmd, &mut out, true).await
    })
}

fn principal(t: &str, what: &str) -> Result<Principal, Failure> {
    Principal::from_text(t).map_err(|e| Failure(format!("{what} {t:?} is not a principal: {e}")))
}

fn bytes(conn: &Conn, s: &str, what: &str) -> Result<Vec<u8>, Failure> {
    if conn.hex {
        hex::decode(s).map_err(|e| Failure(format!("{what} {s:?} is not hex ({e}); drop --hex")))
    } else {
        Ok(s.as_bytes().to_vec())
    }
}

/// A progress bar of `len` steps drawn with `template`, or a hidden one when `shown` is false
/// (tests, `--output json` pipelines).
pub(crate) fn progress_bar(shown: bool, len: u64, template: &str) -> Result<ProgressBar, Failure> {
    let bar = if shown {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .map_err(|e| Failure(e.to_string()))?
            .progress_chars("=> "),
    );
    Ok(bar)
}

/// A client error as one line, with what to do where that is clear.
pub(crate) fn fail<E: Display>(what: &str, e: Error<E>) -> Failure {
    let hint = match &e {
        Error::Refused(r) if r.to_string().starts_with("the caller may not") => {
            "; pass --identity with the PEM of a principal allowed to do this"
        }
        // A partition answers a caller who may not read a SubDB as for an absent one.
        Error::Refused(r) if r.to_string() == "no such SubDB" => {
            "; if it exists and is shared with you, pass --identity with the PEM of a principal \
             allowed to read it"
        }
        Error::NotFound { .. } => "; `flotilla routes` lists the SubDBs",
        Error::GaveUp { .. } => "; the outcome is unknown: run the same command again",
        Error::Rejected(_) => "; check --network and --index",
        _ => "",
    };
    Failure(format!("{what}: {e}{hint}"))
}

pub(crate) fn io(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        // The reader went away (`flotilla scan ... | head`): nothing left to say.
        std::process::exit(0);
    }
    Failure(format!("cannot write the output: {e}"))
}

fn shown(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(t) => t.to_string(),
        Err(_) => format!("0x{}", hex::encode(b)),
    }
}

/// Runs one data command with `client`, printing to `out`. `progress` shows a progress bar
/// during loads.
pub async fn exec<T: Transport>(
    client: &Client<T>,
    cmd: &DataCmd,
    out: &mut dyn Write,
    progress: bool,
) -> Result<(), Failure> {
    let conn = cmd.conn();
    let json = conn.output == Output::Json;
    match cmd {
        DataCmd::Create {
            name,
            hard_cap,
            owner,
            readers,
            writers,
            ..
        } => {
            let opts = CreateOptions {
                hard_cap: *hard_cap,
                owner: owner
                    .as_deref()
                    .map(|o| principal(o, "--owner"))
                    .transpose()?,
                readers: readers
                    .iter()
                    .map(|p| principal(p, "--reader"))
                    .collect::<Result<_, _>>()?,
                writers: writers
                    .iter()
                    .map(|p| principal(p, "--writer"))
                    .collect::<Result<_, _>>()?,
            };
            let inner = client
                .create_subdb(name, opts)
                .await
                .map_err(|e| fail(&format!("create {name}"), e))?;
            if json {
                let v = serde_json::json!({"name": name, "partition": inner.partition.to_text(), "subdb": inner.subdb});
                writeln!(out, "{v}").map_err(io)
            } else {
                writeln!(
                    out,
                    "created {name} on partition {} as SubDB {}",
                    inner.partition, inner.subdb
                )
                .map_err(io)
            }
        }
        DataCmd::Drop { name, .. } => {
            client
                .delete_subdb(name)
                .await
                .map_err(|e| fail(&format!("drop {name}"), e))?;
            writeln!(out, "dropped {name}").map_err(io)
        }
        DataCmd::Put {
            name, key, value, ..
        } => {
            let k = bytes(conn, key, "key")?;
            let v = bytes(conn, value, "value")?;
            let r = client
                .put(name, &k, &v)
                .await
                .map_err(|e| fail(&format!("put {name}"), e))?;
            if json {
                let v = serde_json::json!({"replaced": r.replaced, "evicted": r.evicted});
                writeln!(out, "{v}").map_err(io)
            } else {
                let what = if r.replaced { "replaced" } else { "new" };
                let ev = if r.evicted > 0 {
                    format!(", {} evicted by the hard cap", r.evicted)
                } else {
                    String::new()
                };
                writeln!(out, "ok ({what}{ev})").map_err(io)
            }
        }
        DataCmd::Get { name, key, .. } => {
            let k = bytes(conn, key, "key")?;
            let v = client
                .get(name, &k)
                .await
                .map_err(|e| fail(&format!("get {name}"), e))?;
            if json {
                writeln!(out, "{}", records::item_json(&k, v.as_deref())).map_err(io)
            } else {
                match v {
                    Some(v) => writeln!(out, "{}", shown(&v)).map_err(io),
                    None => Err(Failure(format!("{} is not in {name}", shown(&k)))),
                }
            }
        }
        DataCmd::Del { name, key, .. } => {
            let k = bytes(conn, key, "key")?;
            let existed = client
                .delete(name, &k)
                .await
                .map_err(|e| fail(&format!("del {name}"), e))?;
            if json {
                writeln!(out, "{}", serde_json::json!({ "existed": existed })).map_err(io)
            } else {
                let what = if existed { "deleted" } else { "was not there" };
                writeln!(out, "{what}").map_err(io)
            }
        }
        DataCmd::Scan {
            name,
            reverse,
            from,
            to,
            limit,
            ..
        } => {
            let opts = ScanOptions {
                from: from
                    .as_deref()
                    .map(|f| bytes(conn, f, "--from"))
                    .transpose()?,
                to: to.as_deref().map(|t| bytes(conn, t, "--to")).transpose()?,
                reverse: *reverse,
                limit: *limit,
                page: None,
            };
            let mut items = std::pin::pin!(client.scan(name, opts));
            while let Some(e) = items.next().await {
                let e = e.map_err(|e| fail(&format!("scan {name}"), e))?;
                if json {
                    writeln!(out, "{}", records::item_json(&e.key, Some(&e.value))).map_err(io)?;
                } else {
                    writeln!(out, "{}\t{}", shown(&e.key), shown(&e.value)).map_err(io)?;
                }
            }
            Ok(())
        }
        DataCmd::Routes { .. } => {
            let mut req = RoutesRequest::default();
            let mut all = vec![];
            loop {
                let page = client
                    .routes(req.clone())
                    .await
                    .map_err(|e| fail("routes", e))?;
                all.extend(page.routes);
                match page.next {
                    Some(n) => req.start_after = Some(n),
                    None => break,
                }
            }
            if json {
                let v: Vec<_> = all
                    .iter()
                    .map(|r| serde_json::json!({"name": r.outer_key, "partition": r.inner.partition.to_text(), "subdb": r.inner.subdb}))
                    .collect();
                writeln!(out, "{}", serde_json::Value::Array(v)).map_err(io)
            } else {
                for r in &all {
                    writeln!(
                        out,
                        "{}\t{}\t{}",
                        r.outer_key, r.inner.partition, r.inner.subdb
                    )
                    .map_err(io)?;
                }
                Ok(())
            }
        }
        DataCmd::UploadWasm { file, .. } => {
            crate::fleet::upload_wasm(client, file, conn.output, out, progress).await
        }
        DataCmd::Upgrade { batch, no_wait, .. } => {
            crate::fleet::upgrade(client, *batch, *no_wait, conn.output, out, progress).await
        }
        DataCmd::Stats { .. } => {
            let s = client.index_stats().await.map_err(|e| fail("stats", e))?;
            if json {
                let v = serde_json::to_value(&s).map_err(|e| Failure(e.to_string()))?;
                writeln!(out, "{v}").map_err(io)
            } else {
                write!(out, "{}", fleet_table(&s)).map_err(io)
            }
        }
        DataCmd::Export {
            name, out: file, ..
        } => {
            let mut sink: Box<dyn Write> = match file {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .map_err(|e| Failure(format!("cannot create {}: {e}", p.display())))?,
                )),
                None => Box::new(&mut *out),
            };
            let mut items = std::pin::pin!(client.scan(name, ScanOptions::default()));
            let mut n = 0u64;
            while let Some(e) = items.next().await {
                let e = e.map_err(|e| fail(&format!("export {name}"), e))?;
                writeln!(sink, "{}", records::item_json(&e.key, Some(&e.value))).map_err(io)?;
                n += 1;
            }
            sink.flush().map_err(io)?;
            drop(sink);
            if let Some(p) = file {
                writeln!(out, "exported {n} items of {name} to {}", p.display()).map_err(io)?;
            }
            Ok(())
        }
        DataCmd::Load {
            name, file, format, ..
        } => {
            let format = format.unwrap_or_else(|| Format::of(file));
            let id = records::load_id(name, file)
                .map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?;
            let total = records::read_records(file, format)
                .map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?
                .count() as u64;
            let mut cp = FileCheckpoint::open(file, name, &id).map_err(Failure)?;
            let recs = records::read_records(file, format)
                .map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?;
            let bar = progress_bar(
                progress,
                total,
                "[{bar:30}] {pos}/{len} items {per_sec} {eta}",
            )?;
            let r = load(client, name, &id, recs, &mut cp, |p: Progress| {
                bar.set_position(p.records);
                ControlFlow::Continue(())
            })
            .await;
            bar.finish_and_clear();
            match r {
                Ok(p) => {
                    let cp_path = cp.path().display().to_string();
                    cp.finish()
                        .map_err(|e| Failure(format!("cannot remove {cp_path}: {e}")))?;
                    writeln!(
                        out,
                        "loaded {} items into {name} in {} batched writes",
                        p.records, p.parts
                    )
                    .map_err(io)
                }
                Err(LoadError::BadRecord { record, reason }) => Err(Failure(format!(
                    "{} record {} ({reason}); the parts before it are loaded: fix the record, \
                     delete {} and run again (items already loaded are written again, not \
                     duplicated)",
                    file.display(),
                    record + 1,
                    cp.path().display()
                ))),
                Err(e) => Err(Failure(format!(
                    "load into {name}: {e}; run the same command again to resume from {}",
                    cp.path().display()
                ))),
            }
        }
    }
}

/// `flotilla stats` as a table.
pub fn fleet_table(s: &IndexStats) -> String {
    let mut t = String::new();
    let cap = s.move_cap_bytes.max(1);
    t += &format!(
        "{} SubDBs on {} partitions; move cap {} B; routing version {}; spare target {}; {} being created\n",
        s.subdbs,
        s.partitions.len(),
        s.move_cap_bytes,
        s.routing_version,
        s.spare_pool_target,
        s.partitions_being_created
    );
    t += &format!(
        "creates: {}; at most {} SubDBs per owner\n",
        match s.create_policy {
            CreatePolicy::Open => "open to every signed-in principal".to_string(),
            CreatePolicy::AllowList => format!("allow-list of {} principals", s.allowed_creators),
        },
        s.max_subdbs_per_owner
    );
    let c = &s.cycles;
    t += &format!(
        "index cycles {}{} (reserve {}; top up below {} to {}; {} top-ups, {} cycles)\n",
        c.balance,
        if c.low {
            ", LOW: no new partitions"
        } else {
            ""
        },
        c.reserve,
        c.threshold,
        c.target,
        c.top_ups,
        c.topped_up
    );
    t += &format!(
        "{:<29} {:<8} {:>12} {:>6} {:>7} {:>9} {:>16}\n",
        "partition", "state", "bytes", "cap%", "SubDBs", "items", "cycles"
    );
    for p in &s.partitions {
        let state = match p.state {
            PartitionState::Spare => "spare",
            PartitionState::Active => "active",
            PartitionState::Full => "full",
        };
        t += &format!(
            "{:<29} {:<8} {:>12} {:>5}% {:>7} {:>9} {:>16}\n",
            p.id.to_text(),
            state,
            p.bytes,
            p.bytes.saturating_mul(100) / cap,
            p.subdbs,
            p.items,
            p.cycles.map_or("?".to_string(), |c| c.to_string())
        );
    }
    if s.partitions_total > s.partitions.len() as u64 {
        t += &format!(
            "(the oldest {} of {} partitions)\n",
            s.partitions.len(),
            s.partitions_total
        );
    }
    if s.moves_total == 0 {
        t += "no moves in flight\n";
    } else if s.moves.is_empty() {
        // The index names moves (outer keys) to its admins only.
        t += &format!(
            "{} moves in flight (names shown to admins: pass --identity with an admin's PEM)\n",
            s.moves_total
        );
    } else {
        t += &format!("{} moves in flight:\n", s.moves.len());
        for m in &s.moves {
            t += &format!(
                "  {:?} {} -> {} phase {} chunks {} ({} B) failures {} delta rounds {}{}{}\n",
                m.outer_key,
                m.source.partition,
                m.target,
                m.phase,
                m.chunks,
                m.bytes,
                m.failures,
                m.delta_rounds,
                if m.throttled {
                    ", writers throttled"
                } else {
                    ""
                },
                match m.paused_at {
                    Some(at) => format!(", writes paused since {at} ns"),
                    None => String::new(),
                }
            );
        }
    }
    t += &format!(
        "longest write pause of a move: {:.3} s\n",
        s.longest_write_pause_ns as f64 / 1e9
    );
    if let Some(u) = &s.fleet_upgrade {
        t += &crate::fleet::upgrade_text(u);
    }
    t
}
